#!/usr/bin/env bash
# Multi-node benchmark: pod on node 1 -> pod on node 2, through vswitchd's routing between nodes
# (direct and VXLAN), measured in the same run as the kernel baselines Flannel builds (its vxlan
# backend and host-gw), so the figures can be compared.
#
#   sudo ./benches/multinode.sh
#
# Two node namespaces, vsm-n1 and vsm-n2, joined by one underlay veth (vsm-u1 in vsm-n1, vsm-u2
# in vsm-n2; 198.18.0.1/24 and 198.18.0.2/24). Pod vsm-p1 (10.244.1.11/24, gateway 10.244.1.1)
# lives on node 1 and pod vsm-p2 (10.244.2.11/24, gateway 10.244.2.1) on node 2; each pod has an
# eth0. For each variant a fresh topology is built, measured and torn down. Variants:
#   flannel-vxlan     kernel, as Flannel's vxlan backend: per node a bridge cni0 (10.244.N.1/24)
#                     holding the pod veth, flannel.1 = vxlan id 1 local 198.18.0.N dev vsm-uN
#                     dstport 8472 nolearning, MTU 1450, 10.244.N.0/32, and flanneld's static
#                     neigh + fdb + route for the other node. Pod MTU 1450. ip_forward=1.
#   host-gw           kernel, as Flannel's host-gw backend: the same bridges at MTU 1500 and a
#                     route 10.244.R.0/24 via 198.18.0.R. Pod MTU 1500. ip_forward=1.
#   vsw-direct        vswitchd in each node: the pod's eth0 is a TAP port vswitchd creates, the
#                     uplink an AF_PACKET port (with PACKET_VNET_HDR offloads) on vsm-uN, which
#                     holds no address (the switch owns the underlay address); [node] + [[peer]]
#                     with mode "auto" (direct: the peer is on the uplink's subnet). Pod MTU 1500.
#   vsw-vxlan         the same with mode "vxlan". Pod MTU 1450.
#   vsw-direct-afxdp  like vsw-direct, but each pod is a veth pair whose node end is an AF_XDP
#                     port, and the uplink is AF_XDP too. Pod MTU 1500.
#   vsw-tap-direct    like vsw-direct, but the uplink is a TAP port vswitchd creates in the node
#                     and wires to vsm-uN with tc redirects (`attach`): segments cross whole.
#   vsw-tap-vxlan     the same with mode "vxlan": VXLAN around whole segments (UDP tunnel GSO).
# Each vswitchd has one worker, idle "adaptive", unpinned: the machine has 2 CPUs for two
# switches, the client and the server. Clients run on CPU 0 in vsm-p1, servers on CPU 1 in
# vsm-p2.
#
# Knobs (environment):
#   VARIANTS      variants to run, in order (default all seven, in the order above)
#   REPS          repetitions of every measurement; the table shows medians (default 1)
#   T_TCP T_UDP T_LAT T_CRR   seconds of each load (8 8 5 5)
#   PING_INTERVAL seconds between pings of the RTT test (default 0.001)
#   SPIN_US       spin_us of both vswitchd's adaptive workers (default: vswitchd's)
#   RESULTS_DIR   where raw outputs go (default /tmp/vswitch-multinode-<timestamp>)
#   NO_BUILD=1    skip cargo build (use the binaries already in target/release)
#   QUIET_WAIT    before each variant, wait up to this many seconds for other work on the
#                 machine to drop below 25% of a core (default 90)
#
# Everything happens inside vsm-* namespaces; nothing is added to the root namespace. Every
# load runs under `timeout`. Only the PIDs this script started are signalled, and the
# namespaces are deleted on exit, also after a failure or Ctrl-C.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
. scripts/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "multinode.sh builds network namespaces and runs AF_XDP: run it as root" >&2; exit 1; }

ALL_VARIANTS="flannel-vxlan host-gw vsw-direct vsw-vxlan vsw-direct-afxdp vsw-tap-direct vsw-tap-vxlan"
VARIANTS=${VARIANTS:-$ALL_VARIANTS}
REPS=${REPS:-1}
T_TCP=${T_TCP:-8}; T_UDP=${T_UDP:-8}; T_LAT=${T_LAT:-5}; T_CRR=${T_CRR:-5}
PING_INTERVAL=${PING_INTERVAL:-0.001}
CPU_CLI=0; CPU_SRV=1
RES=${RESULTS_DIR:-/tmp/vswitch-multinode-$(date +%Y%m%d-%H%M%S)}
TSV=$RES/results.tsv
# the API sockets live under the results dir; a Unix socket path holds at most 107 bytes
[ ${#RES} -le 70 ] || { echo "RESULTS_DIR $RES is too long for the API socket paths under it" >&2; exit 2; }

NS_PREFIX=vsm-
# index 1 and 2: node namespace, pod namespace, underlay veth end, underlay and pod addresses
NODE=("" ${NS_PREFIX}n1 ${NS_PREFIX}n2)
POD=("" ${NS_PREFIX}p1 ${NS_PREFIX}p2)
UL=("" ${NS_PREFIX}u1 ${NS_PREFIX}u2)
UIP=("" 198.18.0.1 198.18.0.2)
PIP=("" 10.244.1.11 10.244.2.11)
POD1=${POD[1]}; POD2=${POD[2]}; P2=${PIP[2]}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$RES/run.log" >&2; }
nsx() { local n=$1; shift; ip netns exec "$n" "$@"; }
for v in $VARIANTS; do
  case " $ALL_VARIANTS " in *" $v "*) ;; *) echo "unknown variant $v (known: $ALL_VARIANTS)" >&2; exit 2 ;; esac
done

# ------------------------------------------------------------------ processes and teardown
PIDS=()
VSW_PIDS=("" "" "")   # vswitchd of node 1 and node 2
SOCK=("" "" "")
teardown() {
  local pid n i
  # the switches first, gracefully, so they detach their XDP programs and remove their TAPs
  for i in 1 2; do [ -n "${VSW_PIDS[$i]}" ] && stop_pid "${VSW_PIDS[$i]}" 5; VSW_PIDS[$i]=; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid" 2; done
  PIDS=()
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
    # whatever still runs inside our own namespaces was started by this script
    for pid in $(ip netns pids "$n" 2>/dev/null); do stop_pid "$pid" 2; done
    ip netns del "$n" 2>/dev/null
  done
  return 0
}
on_exit() { local rc=$?; trap - EXIT INT TERM; teardown; exit "$rc"; }
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ packages and binaries
mkdir -p "$RES"
ensure_rust
ensure_packages iproute2 iputils-ping iperf3 ethtool procps util-linux python3
for t in ip bridge ping iperf3 ethtool taskset timeout top python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
if [ "${NO_BUILD:-0}" != 1 ]; then
  step "building release binaries"
  cargo build --release --quiet --workspace --bins || exit 1
fi
# run private copies, so a rebuild of target/ during the run cannot swap binaries under us
BIN=$RES/bin
mkdir -p "$BIN"
for b in vswitchd vswitchctl crr; do
  [ -x "$REPO/target/release/$b" ] || { echo "missing $REPO/target/release/$b" >&2; exit 1; }
  cp "$REPO/target/release/$b" "$BIN/$b"
done

teardown # leftovers of an interrupted run
{
  echo "date: $(date -Is)"; echo "kernel: $(uname -r)"; echo "cpus: $(nproc)"
  if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    echo "commit: $(git -C "$REPO" rev-parse --short HEAD) (worktree $(git -C "$REPO" status --porcelain | wc -l) changed files)"
  else
    echo "commit: unknown ($REPO is not a git checkout)"
  fi
  echo "binaries (built): $(stat -c '%n %y' "$REPO"/target/release/{vswitchd,vswitchctl,crr} | tr '\n' ';')"
  echo "variants: $VARIANTS  reps: $REPS  loads (s): tcp $T_TCP udp $T_UDP lat $T_LAT crr $T_CRR"
  echo "iperf3: $(iperf3 --version 2>&1 | head -1)"
  echo "ping: $(ping -V 2>&1 | head -1)"
} > "$RES/env.txt"
: > "$TSV"
rec() { printf '%s\t%s\t%s\t%s\n' "$VAR" "$1" "$REP" "$2" >> "$TSV"; }  # metric value

# ------------------------------------------------------------------ topology
mk_nodes() {  # kernel|vsw: the two nodes and the underlay veth between them
  local kind=$1 i
  for i in 1 2; do
    ip netns add "${NODE[$i]}"; ip -n "${NODE[$i]}" link set lo up
  done
  ip link add "${UL[1]}" netns "${NODE[1]}" type veth peer name "${UL[2]}" netns "${NODE[2]}"
  for i in 1 2; do
    ip -n "${NODE[$i]}" link set "${UL[$i]}" mtu 1500 up
    if [ "$kind" = kernel ]; then
      ip -n "${NODE[$i]}" addr add "${UIP[$i]}/24" dev "${UL[$i]}"
      nsx "${NODE[$i]}" sysctl -qw net.ipv4.ip_forward=1
    fi
    # a vswitchd node keeps no address on its underlay veth: the switch owns it (and answers
    # ARP for it); the kernel must not answer too
  done
}
mk_pod_ns() {  # i
  ip netns add "${POD[$1]}"; ip -n "${POD[$1]}" link set lo up
  nsx "${POD[$1]}" sysctl -qw net.ipv4.tcp_tw_reuse=1
  nsx "${POD[$1]}" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
}
mk_pod_veth() {  # i mtu: eth0 in the pod, its peer vsm-pI in the node
  local i=$1 mtu=$2
  ip link add "${POD[$i]}" netns "${NODE[$i]}" type veth peer name eth0 netns "${POD[$i]}"
  ip -n "${NODE[$i]}" link set "${POD[$i]}" mtu "$mtu" up
  ip -n "${POD[$i]}" link set eth0 mtu "$mtu" up
}
pod_addr() {  # i mtu: address, MTU and default route via the node's gateway 10.244.I.1
  local i=$1 mtu=$2
  ip -n "${POD[$i]}" addr add "${PIP[$i]}/24" dev eth0
  ip -n "${POD[$i]}" link set eth0 mtu "$mtu" up
  ip -n "${POD[$i]}" route add default via "10.244.$i.1" dev eth0
}

setup_kernel() {  # flannel-vxlan|host-gw
  local kind=$1 mtu=1500 i r m
  [ "$kind" = flannel-vxlan ] && mtu=1450
  mk_nodes kernel
  for i in 1 2; do
    mk_pod_ns "$i"
    mk_pod_veth "$i" "$mtu"
    ip -n "${NODE[$i]}" link add cni0 type bridge
    ip -n "${NODE[$i]}" link set cni0 mtu "$mtu"
    ip -n "${NODE[$i]}" addr add "10.244.$i.1/24" dev cni0
    ip -n "${NODE[$i]}" link set cni0 up
    ip -n "${NODE[$i]}" link set "${POD[$i]}" master cni0
    pod_addr "$i" "$mtu"
  done
  if [ "$kind" = host-gw ]; then
    for i in 1 2; do
      r=$((3 - i))
      ip -n "${NODE[$i]}" route add "10.244.$r.0/24" via "${UIP[$r]}" dev "${UL[$i]}"
    done
    return 0
  fi
  for i in 1 2; do
    ip -n "${NODE[$i]}" link add flannel.1 type vxlan id 1 local "${UIP[$i]}" dev "${UL[$i]}" dstport 8472 nolearning
    ip -n "${NODE[$i]}" link set flannel.1 mtu 1450 up
    ip -n "${NODE[$i]}" addr add "10.244.$i.0/32" dev flannel.1
  done
  # what flanneld programs for the other node's lease: its VTEP address .0 -> VTEP MAC (neigh),
  # the VTEP MAC -> its underlay address (fdb), its pod /24 via .0 (route, onlink)
  for i in 1 2; do
    r=$((3 - i))
    m=$(ip -n "${NODE[$r]}" -br link show flannel.1 | awk '{print $3}')
    ip -n "${NODE[$i]}" neigh replace "10.244.$r.0" lladdr "$m" dev flannel.1 nud permanent
    bridge -n "${NODE[$i]}" fdb append "$m" dev flannel.1 dst "${UIP[$r]}" self permanent
    ip -n "${NODE[$i]}" route add "10.244.$r.0/24" via "10.244.$r.0" dev flannel.1 onlink
  done
}

ctl() { local i=$1; shift; timeout 5 "$BIN/vswitchctl" --socket "${SOCK[$i]}" "$@"; }

start_vswitchd() {  # i config dir: start vswitchd in node I and wait until its API answers
  local i=$1 cfg=$2 dir=$3 k
  # `ip netns exec` execs in place, so $! is vswitchd itself
  ip netns exec "${NODE[$i]}" "$BIN/vswitchd" --config "$cfg" --log-level info > "$dir/vswitchd.log" 2>&1 &
  VSW_PIDS[$i]=$!
  for k in $(seq 100); do
    [ -S "${SOCK[$i]}" ] && ctl "$i" status >/dev/null 2>&1 && break
    [ -d "/proc/${VSW_PIDS[$i]}" ] || break
    sleep 0.1
  done
  if ! ctl "$i" status >/dev/null 2>&1; then
    log "  vswitchd of ${NODE[$i]} did not come up; log:"; sed 's/^/    /' "$dir/vswitchd.log" >&2
    return 1
  fi
}

setup_vsw() {  # mode (auto|vxlan) pod-mtu pod-ports (tap|afxdp) [uplink: afpacket|tap]
  local mode=$1 mtu=$2 pods=$3 uplink=${4:-afpacket} i r dir cfg k
  mk_nodes vsw
  for i in 1 2; do
    mk_pod_ns "$i"
    # AF_XDP pods: the veth exists (and is addressed) before the switch opens its node end
    [ "$pods" = afxdp ] && { mk_pod_veth "$i" "$mtu"; pod_addr "$i" "$mtu"; }
  done
  for i in 1 2; do
    r=$((3 - i))
    dir=$RES/$VAR/n$i
    mkdir -p "$dir/state"
    cfg=$dir/vswitchd.toml
    SOCK[$i]=$dir/vswitchd.sock
    {
      printf '[api]\nsocket = "%s"\nmetrics = ""\n\n[state]\ndir = "%s"\n\n' "${SOCK[$i]}" "$dir/state"
      printf '[[worker]]\nidle = "adaptive"\n'
      [ -n "${SPIN_US:-}" ] && printf 'spin_us = %s\n' "$SPIN_US"
      if [ "$uplink" = tap ]; then
        printf '\n[[port]]\nname = "uplink"\ntype = "tap"\ninterface = "vsm-t%s"\nattach = "%s"\n' "$i" "${UL[$i]}"
      else
        printf '\n[[port]]\nname = "uplink"\ninterface = "%s"\n' "${UL[$i]}"
        if [ "$pods" = afxdp ]; then printf 'type = "afxdp"\n'; else printf 'type = "afpacket"\n'; fi
      fi
      printf '\n[[port]]\nname = "p%s"\n' "$i"
      if [ "$pods" = afxdp ]; then printf 'interface = "%s"\n' "${POD[$i]}"; else printf 'type = "tap"\n'; fi
      printf 'pod_netns = "/var/run/netns/%s"\npod_interface = "eth0"\n' "${POD[$i]}"
      printf '\n[node]\nname = "n%s"\npod_cidr = "10.244.%s.0/24"\nuplink = "uplink"\nunderlay_ip = "%s/24"\n' \
        "$i" "$i" "${UIP[$i]}"
      printf '\n[[peer]]\nname = "n%s"\nunderlay_ip = "%s"\npod_cidr = "10.244.%s.0/24"\nmode = "%s"\n' \
        "$r" "${UIP[$r]}" "$r" "$mode"
    } > "$cfg"
    start_vswitchd "$i" "$cfg" "$dir" || return 1
  done
  if [ "$pods" = tap ]; then
    for i in 1 2; do  # vswitchd created eth0 in the pod: address it
      for k in $(seq 50); do ip -n "${POD[$i]}" link show eth0 >/dev/null 2>&1 && break; sleep 0.1; done
      pod_addr "$i" "$mtu" || { log "  no eth0 in ${POD[$i]} (TAP port)"; return 1; }
    done
  fi
  for i in 1 2; do
    ip -n "${NODE[$i]}" -d link show > "$RES/$VAR/n$i/node_links.txt" 2>&1
    nsx "${POD[$i]}" ethtool -k eth0 > "$RES/$VAR/offloads_${POD[$i]}.txt" 2>&1
  done
  return 0
}

# ------------------------------------------------------------------ helpers for measurements
now() { date +%s.%N; }
is_vsw() { [ -n "${VSW_PIDS[1]}${VSW_PIDS[2]}" ]; }
alive() {
  local i
  for i in 1 2; do [ -z "${VSW_PIDS[$i]}" ] || [ -d "/proc/${VSW_PIDS[$i]}" ] || return 1; done
  return 0
}

snap() {  # tag: both switches' drop and port counters, for per-load deltas at the end
  is_vsw || return 0
  local d=$RES/$VAR/snap i
  mkdir -p "$d"
  # vswitchd publishes its counters (and reads the kernel's AF_XDP drop counts) once a second:
  # after a load, wait for that, or its last second lands in the next load's figures
  case $1 in *_post) sleep 1.2 ;; esac
  for i in 1 2; do
    ctl "$i" --json show drops > "$d/${1}_n${i}_drops_r$REP.json" 2>&1
    ctl "$i" --json show ports > "$d/${1}_n${i}_ports_r$REP.json" 2>&1
  done
}

# CPU that other work (builds, tests) used during a load: utime+stime, plus that of reaped
# children (so a cargo's finished rustc processes count), of every user process outside the
# vsm-* namespaces and outside this script. Kernel threads are left out, since they also do
# this benchmark's softirq work; processes that start and exit unreaped within the load are
# missed, so the figure is a lower bound.
noise_mark() {  # file
  local ours=() n
  for n in "${NODE[1]}" "${NODE[2]}" "$POD1" "$POD2"; do
    [ -e "/var/run/netns/$n" ] && ours+=("$(stat -L -c %i "/var/run/netns/$n")")
  done
  python3 - "$1" "$$" "${ours[@]}" <<'PY' 2>/dev/null
import os, sys
out, me, ours = sys.argv[1], sys.argv[2], set(sys.argv[3:])
procs = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        net = str(os.stat(f"/proc/{pid}/ns/net").st_ino)
        st = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    f = st[st.rindex(")") + 2:].split()
    procs[pid] = (f[1], net, int(f[6]), f[19], sum(int(x) for x in f[11:15]))
def mine(pid, depth=0):  # this script or one of its descendants
    while pid in procs and depth < 64:
        if pid == me:
            return True
        pid, depth = procs[pid][0], depth + 1
    return False
with open(out, "w") as o:
    for pid, (_, net, flags, start, ticks) in procs.items():
        if net in ours or flags & 0x00200000 or mine(pid):   # PF_KTHREAD
            continue
        o.write(f"{pid} {start} {ticks}\n")
PY
}
noise_pct() {  # before-file after-file seconds: % of a core used by other work in between
  python3 - "$@" <<'PY' 2>/dev/null || echo NA
import os, sys
def read(f):
    return {(p, s): int(t) for p, s, t in (l.split() for l in open(f))}
a, b = read(sys.argv[1]), read(sys.argv[2])
ticks = sum(t - a.get(k, 0) for k, t in b.items())
print("%.1f" % (100.0 * ticks / os.sysconf("SC_CLK_TCK") / float(sys.argv[3])))
PY
}
LOAD_T0=0
load_begin() {  # tag: the machine quiet enough, counters and other work's CPU before a load
  quiet_gate
  snap "${1}_pre"
  noise_mark "$RES/$VAR/noise_${1}_pre_r$REP.txt"
  LOAD_T0=$(now)
}
load_end() {  # tag
  local t1 v
  t1=$(now)
  noise_mark "$RES/$VAR/noise_${1}_post_r$REP.txt"
  v=$(noise_pct "$RES/$VAR/noise_${1}_pre_r$REP.txt" "$RES/$VAR/noise_${1}_post_r$REP.txt" \
      "$(python3 -c "print($t1 - $LOAD_T0)")")
  rec "other_cpu_$1" "$v"
  snap "${1}_post"
}

server() {  # name cmd...: start a server in pod 2 on CPU_SRV; its PID goes to SRV
  local name=$1; shift
  ip netns exec "$POD2" taskset -c "$CPU_SRV" "$@" > "$RES/$VAR/${name}_server_r$REP.txt" 2>&1 &
  SRV=$!; PIDS+=("$SRV")
  sleep 0.7
}

m_tcp() {
  local o=$RES/$VAR/tcp_r$REP.json v
  local hz sa sb va vb t0 t1 cores
  load_begin tcp
  server tcp timeout $((T_TCP + 12)) iperf3 -s -1 -p 5201
  hz=$(getconf CLK_TCK); sa=$(sys_busy); va=$(vsw_ticks); t0=$(now)
  nsx "$POD1" taskset -c "$CPU_CLI" timeout $((T_TCP + 8)) iperf3 -c "$P2" -p 5201 -t "$T_TCP" -J > "$o" 2>&1
  sb=$(sys_busy); vb=$(vsw_ticks); t1=$(now)
  load_end tcp
  stop_pid "$SRV"
  v=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.3f" % (j["end"]["sum_received"]["bits_per_second"]/1e9))' "$o" 2>/dev/null || echo NA)
  rec tcp_gbps "$v"; log "  tcp: $v Gbit/s"
  # What the transfer cost the machine: busy CPUs (of $(nproc)) over the client's run, the
  # switches' share of them, and throughput per busy CPU (the kernel variants' forwarding runs
  # in softirq on the pods' CPUs, so only the whole machine's time compares them fairly).
  cores=$(python3 -c "print('%.2f' % (($sb - $sa) / $hz / ($t1 - $t0)))")
  rec tcp_busy_cpus "$cores"
  is_vsw && rec tcp_vsw_cpus "$(python3 -c "print('%.2f' % (($vb - $va) / $hz / ($t1 - $t0)))")"
  [ "$v" != NA ] && rec tcp_gbps_per_cpu "$(python3 -c "print('%.2f' % ($v / max($cores, 0.01)))")"
  log "  tcp cost: $cores busy CPUs"
}

m_udp() {
  local o=$RES/$VAR/udp_r$REP.json rx tx loss
  load_begin udp
  server udp timeout $((T_UDP + 12)) iperf3 -s -1 -p 5202
  nsx "$POD1" taskset -c "$CPU_CLI" timeout $((T_UDP + 8)) iperf3 -c "$P2" -p 5202 -u -b 0 -l 64 -t "$T_UDP" -J > "$o" 2>&1
  load_end udp
  stop_pid "$SRV"
  read -r rx tx loss < <(python3 - "$o" <<'PY' 2>/dev/null || echo "NA NA NA"
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum"]          # as the server counted
dt = s["end"] - s["start"]
got = s["packets"] - s["lost_packets"]
print("%.0f %.0f %.2f" % (got / dt, s["packets"] / dt, 100.0 * s["lost_packets"] / max(s["packets"], 1)))
PY
)
  rec udp_rx_pps "$rx"; rec udp_tx_pps "$tx"; rec udp_loss_pct "$loss"
  log "  udp 64 B: rx $rx pps (sent $tx pps, loss $loss %)"
}

m_lat() {  # ICMP echo every PING_INTERVAL s for T_LAT s; avg and p99 from the per-packet times
  local o=$RES/$VAR/ping_r$REP.txt n avg p99
  n=$(python3 -c "print(max(10, int($T_LAT / $PING_INTERVAL)))")
  load_begin lat
  nsx "$POD1" taskset -c "$CPU_CLI" timeout $((T_LAT * 3 + 10)) ping -n -i "$PING_INTERVAL" -c "$n" -s 56 "$P2" > "$o" 2>&1
  load_end lat
  read -r avg p99 < <(python3 - "$o" <<'PY' 2>/dev/null || echo "NA NA"
import re, sys
v = sorted(float(m) * 1000 for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
print("%.1f %.1f" % (sum(v) / len(v), v[min(len(v) - 1, -(-99 * len(v) // 100) - 1)]))
PY
)
  rec ping_avg_us "$avg"; rec ping_p99_us "$p99"
  log "  ping RTT ($n pings, ${PING_INTERVAL}s apart): avg $avg us, p99 $p99 us"
}

m_crr() {
  local o=$RES/$VAR/crr_r$REP.txt cps p99
  load_begin crr
  server crr timeout $((T_CRR + 12)) "$BIN/crr" server --addr "$P2" --port 7777
  nsx "$POD1" taskset -c "$CPU_CLI" timeout $((T_CRR + 8)) "$BIN/crr" client --addr "$P2" --port 7777 --seconds "$T_CRR" > "$o" 2>&1
  load_end crr
  stop_pid "$SRV"
  cps=$(grep -oE 'cps=[0-9.]+' "$o" | cut -d= -f2); p99=$(grep -oE 'p99_us=[0-9]+' "$o" | cut -d= -f2)
  rec crr_cps "${cps:-NA}"; rec crr_p99_us "${p99:-NA}"
  log "  crr: ${cps:-NA} conn/s, p99 ${p99:-NA} us $(grep -oE 'errors=[0-9]+' "$o")"
}

sys_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }  # busy ticks, all CPUs
vsw_ticks() {  # utime+stime of both vswitchd processes (the leader's figures cover all threads)
  local t=0 i
  for i in 1 2; do
    [ -n "${VSW_PIDS[$i]:-}" ] && t=$((t + $(sed 's/.*) //' "/proc/${VSW_PIDS[$i]}/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

quiet_window() {  # 5 s with no load: the switches' own CPU use, and everyone else's (noise check)
  local hz a b sa sb v
  hz=$(getconf CLK_TCK)
  sa=$(sys_busy); a=$(vsw_ticks); sleep 5; sb=$(sys_busy); b=$(vsw_ticks)
  if is_vsw; then
    v=$(python3 -c "print('%.1f' % (100.0 * ($b - $a) / $hz / 5))")
    rec idle_cpu_pct "$v"; log "  both vswitchd idle CPU: $v % of a core"
  fi
  v=$(python3 -c "print('%.1f' % max(0.0, 100.0 * (($sb - $sa) - ($b - $a)) / $hz / 5))")
  rec other_cpu_pct "$v"; log "  CPU used by everything else while quiet: $v % of a core"
}

quiet_gate() {  # wait (at most QUIET_WAIT s) until the rest of the machine uses < 25% of a core
  local hz t0 a b v
  hz=$(getconf CLK_TCK); t0=$SECONDS
  while :; do
    a=$(awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat); sleep 2
    b=$(awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
    v=$(( 100 * (b - a) / hz / 2 ))
    [ "$v" -lt 25 ] && return 0
    if [ $((SECONDS - t0)) -ge "${QUIET_WAIT:-90}" ]; then
      log "  machine still busy ($v % of a core used by other work): measuring anyway"
      rec busy_gate_pct "$v"; return 0
    fi
    log "  machine busy ($v % of a core used by other work); waiting"
    sleep 3
  done
}

wait_ping() {  # the first packets to the peer may wait for ARP on the underlay: up to 15 s
  local i
  for i in $(seq 30); do nsx "$POD1" ping -n -c1 -W1 "$P2" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}

vsw_state() {  # tag: what each switch says about its routing and its ports
  local i d
  for i in 1 2; do
    d=$RES/$VAR/n$i
    ctl "$i" --json show peers > "$d/peers_$1.json" 2>&1
    ctl "$i" show peers > "$d/peers_$1.txt" 2>&1
    ctl "$i" show node > "$d/node_$1.txt" 2>&1
    ctl "$i" show routes > "$d/routes_$1.txt" 2>&1
    ctl "$i" show neighbors > "$d/neighbors_$1.txt" 2>&1
    ctl "$i" --json show ports > "$d/ports_$1.json" 2>&1
    ctl "$i" show ports > "$d/ports_$1.txt" 2>&1
    ctl "$i" --json show drops > "$d/drops_$1.json" 2>&1
    ctl "$i" show drops > "$d/drops_$1.txt" 2>&1
  done
}

rec_modes() {  # the forwarding mode each switch uses towards the other node
  local i m
  for i in 1 2; do
    m=$(python3 -c 'import json,sys; print(",".join(p["mode"] for p in json.load(open(sys.argv[1]))) or "none")' \
        "$RES/$VAR/n$i/peers_start.json" 2>/dev/null || echo "?")
    rec "mode_n$i" "$m"
  done
}

dump_failure() {  # why a vswitchd variant did not connect: the switches' view and log tails
  local i
  is_vsw || return 0
  vsw_state failed
  for i in 1 2; do
    log "  ${NODE[$i]}: peers:"; sed 's/^/    /' "$RES/$VAR/n$i/peers_failed.txt" >&2
    log "  ${NODE[$i]}: neighbours:"; sed 's/^/    /' "$RES/$VAR/n$i/neighbors_failed.txt" >&2
    log "  ${NODE[$i]}: drops:"; sed 's/^/    /' "$RES/$VAR/n$i/drops_failed.txt" >&2
    log "  ${NODE[$i]}: log tail:"; tail -15 "$RES/$VAR/n$i/vswitchd.log" | sed 's/^/    /' >&2
  done
}

run_variant() {
  VAR=$1
  mkdir -p "$RES/$VAR"
  log "=== $VAR (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  # other work on the machine skews every figure: keep a record of what else was running
  top -b -n 1 -o %CPU 2>/dev/null | head -15 > "$RES/$VAR/top_before.txt"
  REP=1
  quiet_gate
  local ok=1 i
  case $VAR in
    flannel-vxlan|host-gw) setup_kernel "$VAR" ;;
    vsw-direct) setup_vsw auto 1500 tap || ok=0 ;;
    vsw-vxlan) setup_vsw vxlan 1450 tap || ok=0 ;;
    vsw-direct-afxdp) setup_vsw auto 1500 afxdp || ok=0 ;;
    vsw-tap-direct) setup_vsw auto 1500 tap tap || ok=0 ;;
    vsw-tap-vxlan) setup_vsw vxlan 1450 tap tap || ok=0 ;;
  esac
  if [ $ok = 1 ] && ! wait_ping; then log "  no connectivity ${PIP[1]} -> $P2"; ok=0; fi
  if [ $ok = 0 ]; then rec failed 1; dump_failure; teardown; return 1; fi
  nsx "$POD1" ping -n -c 3 -i 0.2 "$P2" > "$RES/$VAR/ping_check.txt" 2>&1
  if is_vsw; then
    vsw_state start; rec_modes
    log "  peer modes: n1 -> n2 $(awk -F'\t' '$2=="mode_n1"{print $4}' "$TSV" | tail -1), n2 -> n1 $(awk -F'\t' '$2=="mode_n2"{print $4}' "$TSV" | tail -1)"
  fi
  sleep 1
  quiet_window
  for REP in $(seq "$REPS"); do
    m_tcp; alive || break
    m_udp; alive || break
    m_lat; alive || break
    m_crr; alive || break
  done
  top -b -n 1 -o %CPU 2>/dev/null | head -15 > "$RES/$VAR/top_after.txt"
  if is_vsw; then
    if alive; then
      vsw_state end
    else
      for i in 1 2; do
        [ -d "/proc/${VSW_PIDS[$i]}" ] && continue
        wait "${VSW_PIDS[$i]}"; local rc=$?
        log "  vswitchd of ${NODE[$i]} DIED during $VAR (exit $rc); log tail:"
        tail -20 "$RES/$VAR/n$i/vswitchd.log" | sed 's/^/    /' >&2
        rec vswitchd_died "$rc"; VSW_PIDS[$i]=
      done
    fi
  fi
  teardown
}

# ------------------------------------------------------------------ run
step "multi-node benchmark: variants [$VARIANTS], $REPS rep(s); raw output in $RES"
for v in $VARIANTS; do run_variant "$v"; done

# ------------------------------------------------------------------ report
python3 - "$RES" "$VARIANTS" <<'PY' | tee "$RES/table.txt"
import glob, json, os, statistics, sys

res, variants = sys.argv[1], sys.argv[2].split()

vals, text = {}, {}
for line in open(os.path.join(res, "results.tsv")):
    var, metric, rep, v = line.rstrip("\n").split("\t")
    try:
        vals.setdefault((var, metric), []).append(float(v))
    except ValueError:
        if v != "NA":
            text[(var, metric)] = v

def med(var, metric):
    v = vals.get((var, metric))
    return statistics.median(v) if v else None

def drops(path):
    """{(port, reason): count} from `vswitchctl --json show drops`."""
    try:
        return {(r["port"], r["reason"]): r["count"] for r in json.load(open(path))}
    except Exception:
        return None

# switch drops per load, both nodes together, from the before/after snapshots
LOADS = ("tcp", "udp", "lat", "crr")
why = {}
for var in variants:
    d = os.path.join(res, var, "snap")
    if not os.path.isdir(d):
        continue
    for load in LOADS:
        per = []
        for pre in sorted(glob.glob(os.path.join(d, f"{load}_pre_n1_drops_r*.json"))):
            r = pre.rsplit("_r", 1)[1]
            total, seen = 0, False
            for n in (1, 2):
                a = drops(os.path.join(d, f"{load}_pre_n{n}_drops_r{r}"))
                b = drops(os.path.join(d, f"{load}_post_n{n}_drops_r{r}"))
                if a is None or b is None:
                    continue
                seen = True
                for k, c in b.items():
                    dc = c - a.get(k, 0)
                    if dc:
                        total += dc
                        key = f"n{n} {k[0]} {k[1]}"
                        why.setdefault((var, load), {})[key] = why.get((var, load), {}).get(key, 0) + dc
            if seen:
                per.append(total)
        if per:
            vals[(var, f"sw_drops_{load}")] = per
    # bytes per frame node 1's uplink sent during TCP: shows whether TCP segments crossed the
    # underlay whole (GSO) or were cut into MTU-sized frames
    for pre in sorted(glob.glob(os.path.join(d, "tcp_pre_n1_ports_r*.json"))):
        r = pre.rsplit("_r", 1)[1]
        try:
            a, b = (next(p["stats"] for p in json.load(open(f)) if p["name"] == "uplink")
                    for f in (pre, os.path.join(d, f"tcp_post_n1_ports_r{r}")))
        except Exception:
            continue
        dp = b["tx_packets"] - a["tx_packets"]
        if dp > 0:
            vals.setdefault((var, "uplink_tx_bpp_tcp"), []).append((b["tx_bytes"] - a["tx_bytes"]) / dp)

ROWS = [
    ("TCP throughput, Gbit/s", "tcp_gbps", "{:.2f}", True),
    ("TCP: busy CPUs of the machine", "tcp_busy_cpus", "{:.2f}", False),
    ("TCP: both vswitchd, CPUs", "tcp_vsw_cpus", "{:.2f}", False),
    ("TCP Gbit/s per busy CPU", "tcp_gbps_per_cpu", "{:.2f}", True),
    ("UDP 64 B rx, kpps (iperf3 server)", "udp_rx_pps", "k", True),
    ("UDP 64 B sent, kpps", "udp_tx_pps", "k", False),
    ("UDP 64 B loss, %", "udp_loss_pct", "{:.1f}", False),
    ("ICMP RTT avg, us", "ping_avg_us", "{:.1f}", True),
    ("ICMP RTT p99, us", "ping_p99_us", "{:.1f}", True),
    ("TCP CRR, conn/s", "crr_cps", "{:.0f}", True),
    ("TCP CRR p99, us", "crr_p99_us", "{:.0f}", True),
    ("peer mode n1 -> n2", "mode_n1", "s", False),
    ("peer mode n2 -> n1", "mode_n2", "s", False),
    ("n1 uplink bytes/frame during TCP", "uplink_tx_bpp_tcp", "{:.0f}", False),
    ("switch drops during TCP (n1+n2)", "sw_drops_tcp", "{:.0f}", False),
    ("switch drops during UDP 64 B", "sw_drops_udp", "{:.0f}", False),
    ("switch drops during ping+CRR", None, "{:.0f}", False),
    ("both vswitchd CPU while idle, % core", "idle_cpu_pct", "{:.1f}", False),
    ("other CPU use while quiet, % core", "other_cpu_pct", "{:.1f}", False),
    ("other CPU use during TCP, % core", "other_cpu_tcp", "{:.1f}", False),
    ("other CPU use during UDP", "other_cpu_udp", "{:.1f}", False),
    ("other CPU use during ping", "other_cpu_lat", "{:.1f}", False),
    ("other CPU use during CRR", "other_cpu_crr", "{:.1f}", False),
]

def value(c, key):
    if key is None:
        parts = [med(c, f"sw_drops_{k}") for k in ("lat", "crr")]
        return sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None
    return med(c, key)

def fmt(v, f):
    if v is None:
        return "-"
    if f == "k":
        return "{:.0f}".format(v / 1000.0)
    return f.format(v)

def render(hdr, rows):
    w = [max(len(r[i]) for r in [hdr] + rows) for i in range(len(hdr))]
    line = lambda r: "  ".join(r[0].ljust(w[0]) if i == 0 else r[i].rjust(w[i]) for i in range(len(r)))
    print()
    print(line(hdr))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(line(r))

table = []
for label, key, f, _ in ROWS:
    row = [label]
    for c in variants:
        row.append(text.get((c, key), "-") if f == "s" else fmt(value(c, key), f))
    table.append(row)
render(["metric"] + variants, table)

for base in ("flannel-vxlan", "host-gw"):
    if base not in variants:
        continue
    others = [c for c in variants if c != base]
    rows = []
    for label, key, _, ratio in ROWS:
        if not ratio:
            continue
        row = [label.split(",")[0] + (" (lower is better)" if "RTT" in label or "p99" in label else "")]
        for c in others:
            b, v = med(base, key), med(c, key)
            row.append("{:.2f}x".format(v / b) if b and v is not None else "-")
        rows.append(row)
    render([f"ratio against {base}"] + others, rows)

print()
for c in variants:
    for k in LOADS:
        if (c, k) in why:
            print(f"  {c} switch drops during {k}: " + ", ".join(f"{n} {r}" for r, n in why[(c, k)].items()))
    if (c, "failed") in vals:
        print(f"  {c}: FAILED (no connectivity or a switch did not start; see run.log and {c}/n*/vswitchd.log)")
    if (c, "vswitchd_died") in vals:
        print(f"  {c}: a vswitchd DIED during the run (see run.log)")
    if (c, "busy_gate_pct") in vals:
        b = vals[(c, "busy_gate_pct")]
        print(f"  {c}: {len(b)} time(s) measured while other work used up to {max(b):.0f}% of a core (QUIET_WAIT ran out)")

print("\nTargets from the issue (informational, not pass/fail):")
def ratio(c, base, key):
    b, v = med(base, key), med(c, key)
    return v / b if b and v is not None else None
if "flannel-vxlan" in variants:
    for c, want, what in (("vsw-direct", 1.25, "direct mode at least 1.25x the throughput of Flannel's vxlan backend"),
                          ("vsw-direct-afxdp", 1.25, "direct mode at least 1.25x the throughput of Flannel's vxlan backend"),
                          ("vsw-tap-direct", 1.25, "direct mode at least 1.25x the throughput of Flannel's vxlan backend"),
                          ("vsw-vxlan", 1.0, "our VXLAN at least equal to Flannel's vxlan backend"),
                          ("vsw-tap-vxlan", 1.0, "our VXLAN at least equal to Flannel's vxlan backend")):
        if c not in variants:
            continue
        t, u = ratio(c, "flannel-vxlan", "tcp_gbps"), ratio(c, "flannel-vxlan", "udp_rx_pps")
        if t is not None:
            print(f"  {c}: {what}: TCP {t:.2f}x" + (f", UDP 64 B rx {u:.2f}x" if u is not None else "")
                  + f" (target >= {want:.2f}x: {'reached' if t >= want else 'not reached'} on TCP)")
if "host-gw" in variants:
    for c in variants:
        if not c.startswith("vsw-"):
            continue
        r = ratio(c, "host-gw", "crr_cps")
        if r is not None:
            print(f"  {c}: short-connection rate within 10% of host-gw: CRR {r:.2f}x host-gw "
                  f"(target >= 0.90x: {'reached' if r >= 0.9 else 'not reached'})")
if "flannel-vxlan" not in variants and "host-gw" not in variants:
    print("  (they need flannel-vxlan and host-gw in VARIANTS)")
print(f"\nraw outputs: {res}")
PY
