# Shared set-up helpers for the scripts in this folder (sourced, not run).

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# No `cmd | grep -q` here: grep -q exits at the first match, cmd may then die of SIGPIPE, and
# the scripts' pipefail turns that into a failed test. `grep PATTERN >/dev/null` reads it all.

# Installs the Debian packages among "$@" that are not installed yet.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  step "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Makes sure cargo is on PATH (rustup installs it under ~/.cargo/bin).
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
    exit 1
  fi
  rustup component list --installed 2>/dev/null | grep clippy >/dev/null || rustup component add clippy rustfmt >/dev/null 2>&1 || true
}

# Ends one process the caller started, by PID (never by name).
stop_pid() {  # PID [grace seconds]: SIGTERM, then SIGKILL after the grace period; this PID only
  local pid=$1 grace=${2:-3} i
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 10; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
