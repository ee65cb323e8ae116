#!/usr/bin/env bash
# The main job on an embedded default: builds a small node in network namespaces (four pods on
# veth pairs, the switch in between), starts vswitchd on it, sends real traffic (ping, iperf3
# TCP and UDP) pod to pod, shows what the switch saw, and tears everything down.
#
#   pods vsd-p1, vsd-p2, vsd-p3 (VLAN 10) and vsd-p4 (VLAN 20), 10.244.1.11-14/24, each on a
#   veth whose host end is an AF_XDP port of the switch;
#   pods vsd-p5, vsd-p6 (VLAN 10), 10.244.1.15-16/24, whose eth0 the switch creates as a TAP
#   port with TCP segmentation and checksum offload (64 KB segments cross the switch whole)
#   switch namespace vsd-sw: one worker
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "the demo builds network namespaces: run it as root" >&2; exit 1; }
ensure_rust
ensure_packages iproute2 iputils-ping iperf3
for tool in ip ping iperf3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

step "building vswitchd and vswitchctl (release)"
cargo build --release --quiet -p vswitch -p vswitchctl
BIN=$PWD/target/release

NS_PREFIX=vsd-
. scripts/netns.sh
WORK=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
cleanup() { ns_teardown; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
ns_teardown # leftovers of an interrupted run

step "building the topology"
ns_add sw
declare -A VLAN=([p1]=10 [p2]=10 [p3]=10 [p4]=20)
declare -A ADDR=([p1]=10.244.1.11 [p2]=10.244.1.12 [p3]=10.244.1.13 [p4]=10.244.1.14)
for p in p1 p2 p3 p4; do
  pod_add "$p" sw "${ADDR[$p]}/24"
  echo "  pod $NS_PREFIX$p  eth0 ${ADDR[$p]}  VLAN ${VLAN[$p]}  <->  AF_XDP port on $NS_PREFIX$p"
done
for p in p5 p6; do
  ns_add "$p"
  echo "  pod $NS_PREFIX$p  eth0 (a TAP the switch creates)  VLAN 10"
done

SOCK=$WORK/vswitchd.sock
cat > "$WORK/vswitchd.toml" <<TOML
[api]
socket = "$SOCK"
metrics = ""

[state]
dir = "$WORK/state"

[[worker]]
idle = "adaptive"
TOML
for p in p1 p2 p3 p4; do
  cat >> "$WORK/vswitchd.toml" <<TOML

[[port]]
name = "$p"
interface = "$NS_PREFIX$p"
vlan = ${VLAN[$p]}
pod_netns = "/var/run/netns/$NS_PREFIX$p"
pod_interface = "eth0"
TOML
done
for p in p5 p6; do
  cat >> "$WORK/vswitchd.toml" <<TOML

[[port]]
name = "$p"
type = "tap"
vlan = 10
pod_netns = "/var/run/netns/$NS_PREFIX$p"
pod_interface = "eth0"
TOML
done

step "starting vswitchd in $NS_PREFIX""sw"
ns_spawn sw "$BIN/vswitchd" --config "$WORK/vswitchd.toml" --log-level warn
ctl() { "$BIN/vswitchctl" --socket "$SOCK" "$@"; }
# The control loop answers once every port is open.
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
ctl status >/dev/null 2>&1 || { echo "vswitchd did not come up" >&2; exit 1; }
# The TAP pods' eth0 now exists (the switch made it); configure it as a CNI plugin would.
ip -n "${NS_PREFIX}p5" addr add 10.244.1.15/24 dev eth0; ip -n "${NS_PREFIX}p5" link set eth0 up
ip -n "${NS_PREFIX}p6" addr add 10.244.1.16/24 dev eth0; ip -n "${NS_PREFIX}p6" link set eth0 up

step "ping within VLAN 10"
ns_exec p1 ping -c 3 -i 0.2 -W 1 10.244.1.12
ns_exec p2 ping -c 3 -i 0.2 -W 1 10.244.1.13

step "ping across VLANs (p1 in VLAN 10 -> p4 in VLAN 20): must fail"
if ns_exec p1 ping -c 2 -i 0.2 -W 1 10.244.1.14 >/dev/null; then
  echo "VLAN isolation broken: p1 reached p4" >&2; exit 1
fi
echo "  no reply, as it should be"

step "iperf3 TCP p1 -> p2, 5 s"
ns_spawn p2 iperf3 -s -1 -p 5201
sleep 0.5
ns_exec p1 timeout 20 iperf3 -c 10.244.1.12 -p 5201 -t 5 -f g | tail -4

step "iperf3 TCP between the TAP pods p5 -> p6, 5 s (segments kept whole through the switch)"
ns_spawn p6 iperf3 -s -1 -p 5203
sleep 0.5
ns_exec p5 timeout 20 iperf3 -c 10.244.1.16 -p 5203 -t 5 -f g | tail -4

step "iperf3 UDP p3 -> p1, 200 Mbit/s for 3 s"
ns_spawn p1 iperf3 -s -1 -p 5202
sleep 0.5
ns_exec p3 timeout 20 iperf3 -c 10.244.1.11 -p 5202 -u -b 200M -t 3 -f m | tail -4

step "vswitchctl show ports"
ctl show ports
step "vswitchctl show fdb"
ctl show fdb
step "vswitchctl show workers"
ctl show workers
step "vswitchctl show drops"
ctl show drops
echo
echo "demo done; tearing down"
