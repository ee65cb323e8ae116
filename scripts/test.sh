#!/usr/bin/env bash
# Runs every test of the workspace: unit, property and integration tests (the namespace tests
# need root), then checks formatting and lints. Installs what is missing first, so it works on
# a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
# containernetworking-plugins: the reference host-local IPAM plugin the CNI tests delegate to;
# podman, runc and busybox-static: the real-runtime CNI test (containers from a busybox rootfs).
ensure_packages iproute2 iputils-ping iperf3 ethtool tcpdump containernetworking-plugins \
  podman runc busybox-static

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo build (the namespace tests run the vswitchd and vswitchctl binaries)"
cargo build --workspace --bins
step "cargo test"
# Unit and in-memory tests in parallel; the namespace tests (AF_XDP, AF_PACKET, vswitchd end to
# end) make their own namespaces, and run one at a time so their traffic does not disturb each
# other on a 2-core machine.
cargo test --workspace --lib --bins --tests --exclude vswitch-suite --exclude vswitch-cni -- --test-threads="${TEST_THREADS:-2}"
cargo test -p vswitch-suite -p vswitch-cni --lib --bins --tests -- --test-threads=1
step "doc tests"
cargo test --workspace --doc
step "cargo doc (a broken or private link fails)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
