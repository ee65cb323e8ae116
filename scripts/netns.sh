# Helpers to build throwaway hosts from network namespaces and veth pairs (sourced).
# Every name starts with "$NS_PREFIX" so teardown removes exactly what this run made.

: "${NS_PREFIX:?set NS_PREFIX before sourcing netns.sh}"
NS_PIDS=()

ns_add() { ip netns add "$NS_PREFIX$1"; ip -n "$NS_PREFIX$1" link set lo up; }
ns_exec() { local n=$1; shift; ip netns exec "$NS_PREFIX$n" "$@"; }

# pod NAME SWITCH_NS IP/PREFIX: a pod namespace with eth0, whose peer "<prefix>NAME" sits in the
# switch namespace, up, with no address (the switch owns it).
pod_add() {
  local pod=$1 sw=$2 addr=$3
  ns_add "$pod"
  ip link add "$NS_PREFIX$pod" netns "$NS_PREFIX$sw" type veth peer name eth0 netns "$NS_PREFIX$pod"
  ip -n "$NS_PREFIX$pod" addr add "$addr" dev eth0
  ip -n "$NS_PREFIX$pod" link set eth0 up
  ip -n "$NS_PREFIX$sw" link set "$NS_PREFIX$pod" up
}

# Starts a command in the background inside a namespace; remembers its PID for teardown.
ns_spawn() {
  local n=$1; shift
  ip netns exec "$NS_PREFIX$n" "$@" &
  NS_PIDS+=("$!")
}

ns_teardown() {
  local pid
  for pid in "${NS_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${NS_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  NS_PIDS=()
  local n
  for n in $(ip netns list | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
    ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
}
