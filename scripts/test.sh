#!/usr/bin/env bash
# Runs every test of the workspace: unit, property and integration tests (the namespace tests
# need root), then checks formatting and lints. Installs what is missing first, so it works on
# a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
ensure_packages iproute2 iputils-ping iperf3 ethtool

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo test"
# Namespace tests create and remove their own network namespaces; one at a time keeps their
# traffic measurements from disturbing each other on a 2-core machine.
cargo test --workspace --all-targets -- --test-threads="${TEST_THREADS:-2}"
step "doc tests"
cargo test --workspace --doc
