#!/usr/bin/env bash
# The long fuzz run: every target of ddlgate::fuzz on INPUTS inputs each
# (default 10,000,000), release build. Prints inputs and rates per target;
# a panic prints the seed and input that caused it and exits non-zero.
#   bench/fuzz.sh [INPUTS] [TARGET|all] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example fuzz
exec ./target/release/examples/fuzz "${1:-10000000}" "${2:-all}" "${3:-1}"
