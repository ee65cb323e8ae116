#!/usr/bin/env bash
# The main job on an embedded default: builds a small node in network namespaces (four pods on
# veth pairs, the switch in between), starts vswitchd on it, sends real traffic (ping, iperf3
# TCP and UDP) pod to pod, shows what the switch saw, and tears everything down.
#
#   pods vsd-p1, vsd-p2, vsd-p3 (VLAN 10) and vsd-p4 (VLAN 20), 10.244.1.11-14/24, each on a
#   veth whose host end is an AF_XDP port of the switch;
#   pods vsd-p5, vsd-p6 (VLAN 10), 10.244.1.15-16/24, whose eth0 the switch creates as a TAP
#   port with TCP segmentation and checksum offload (64 KB segments cross the switch whole)
#   switch namespace vsd-sw: one worker; it is also node 1 of a two-node pod network
#   (10.244.1.0/24, gateway 10.244.1.1 answered by the switch) whose node 2, vsd-n2, runs its
#   own vswitchd with TAP pod vsd-p7 (10.244.2.17/24); the nodes' uplinks are AF_PACKET ports
#   (offload-aware) on an underlay veth pair (198.18.0.1 and .2/24), and pods on one node reach
#   pods on the other by direct routing
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
ns_add n2
ns_add p7
# The nodes' own kernels stay quiet on the underlay (no IPv6 neighbour discovery).
for n in sw n2; do ns_exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; done
ip link add "${NS_PREFIX}u1" netns "${NS_PREFIX}sw" type veth peer name "${NS_PREFIX}u2" netns "${NS_PREFIX}n2"
ip -n "${NS_PREFIX}sw" link set "${NS_PREFIX}u1" up
ip -n "${NS_PREFIX}n2" link set "${NS_PREFIX}u2" up
echo "  node 2 $NS_PREFIX""n2 with pod $NS_PREFIX""p7 (a TAP), underlay veth ${NS_PREFIX}u1 <-> ${NS_PREFIX}u2"

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

# Node 1 routes: its pods in VLAN 10 reach node 2's pods through the uplink.
cat >> "$WORK/vswitchd.toml" <<TOML

[[port]]
name = "uplink"
interface = "${NS_PREFIX}u1"
type = "afpacket"

[node]
name = "node1"
pod_cidr = "10.244.1.0/24"
pod_vlan = 10
uplink = "uplink"
underlay_ip = "198.18.0.1/24"

[[peer]]
name = "node2"
underlay_ip = "198.18.0.2"
pod_cidr = "10.244.2.0/24"
TOML
SOCK2=$WORK/n2.sock
cat > "$WORK/n2.toml" <<TOML
[api]
socket = "$SOCK2"
metrics = ""

[state]
dir = "$WORK/n2-state"

[[worker]]
idle = "adaptive"

[[port]]
name = "p7"
type = "tap"
pod_netns = "/var/run/netns/${NS_PREFIX}p7"
pod_interface = "eth0"

[[port]]
name = "uplink"
interface = "${NS_PREFIX}u2"
type = "afpacket"

[node]
name = "node2"
pod_cidr = "10.244.2.0/24"
uplink = "uplink"
underlay_ip = "198.18.0.2/24"

[[peer]]
name = "node1"
underlay_ip = "198.18.0.1"
pod_cidr = "10.244.1.0/24"
TOML

step "starting vswitchd in $NS_PREFIX""sw (node 1) and $NS_PREFIX""n2 (node 2)"
ns_spawn sw "$BIN/vswitchd" --config "$WORK/vswitchd.toml" --log-level warn
ns_spawn n2 "$BIN/vswitchd" --config "$WORK/n2.toml" --log-level warn
ctl() { "$BIN/vswitchctl" --socket "$SOCK" "$@"; }
ctl2() { "$BIN/vswitchctl" --socket "$SOCK2" "$@"; }
# The control loop answers once every port is open.
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && ctl2 status >/dev/null 2>&1 && break; sleep 0.1; done
ctl status >/dev/null 2>&1 || { echo "vswitchd (node 1) did not come up" >&2; exit 1; }
ctl2 status >/dev/null 2>&1 || { echo "vswitchd (node 2) did not come up" >&2; exit 1; }
# The TAP pods' eth0 now exists (the switch made it); configure it as a CNI plugin would.
ip -n "${NS_PREFIX}p5" addr add 10.244.1.15/24 dev eth0; ip -n "${NS_PREFIX}p5" link set eth0 up
ip -n "${NS_PREFIX}p6" addr add 10.244.1.16/24 dev eth0; ip -n "${NS_PREFIX}p6" link set eth0 up
ip -n "${NS_PREFIX}p7" addr add 10.244.2.17/24 dev eth0; ip -n "${NS_PREFIX}p7" link set eth0 up
ip -n "${NS_PREFIX}p7" route add default via 10.244.2.1
for p in p1 p2 p3 p5 p6; do ip -n "$NS_PREFIX$p" route add default via 10.244.1.1; done

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

step "ping across nodes: p1 (node 1) -> p7 (node 2), routed by both switches"
for _ in $(seq 20); do ns_exec p1 ping -c 1 -W 1 10.244.2.17 >/dev/null 2>&1 && break; sleep 0.3; done
ns_exec p1 ping -c 3 -i 0.2 -W 1 10.244.2.17
echo "  and with TTL 1 the gateway (the switch) answers: time exceeded"
ns_exec p1 ping -c 1 -W 1 -t 1 10.244.2.17 | grep -i 'exceeded' || true

step "iperf3 TCP across nodes, TAP pod p5 -> TAP pod p7, 5 s (segments whole over the AF_PACKET uplinks)"
ns_spawn p7 iperf3 -s -1 -p 5204
sleep 0.5
ns_exec p5 timeout 20 iperf3 -c 10.244.2.17 -p 5204 -t 5 -f g | tail -4

step "vswitchctl show ports"
ctl show ports
step "vswitchctl show fdb"
ctl show fdb
step "vswitchctl show workers"
ctl show workers
step "vswitchctl show drops"
ctl show drops
step "vswitchctl show node / peers / routes / neighbors (node 1)"
ctl show node
ctl show peers
ctl show routes
ctl show neighbors
echo
echo "demo done; tearing down"
