#!/usr/bin/env bash
# The long fuzz run: every target of ddlgate::fuzz on INPUTS inputs each
# (default 10,000,000), release build. Prints inputs and rates per target;
# a panic prints the seed and input that caused it and exits non-zero.
#   bench/fuzz.sh [INPUTS] [TARGET|all] [SEED]
# The lexer against PostgreSQL's own scanner (a real server, as the proxy
# tests start one): COUNT generated query strings per standard_conforming_strings
# setting (default 1,000,000), ddlgate's split compared with the server's.
#   bench/fuzz.sh lexer [COUNT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = lexer ]; then
    DDLGATE_LEXER_DIFF="${2:-1000000}" DDLGATE_LEXER_SEED="${3:-1}" \
        exec cargo test --release --test proxy lexing::the_lexer_splits_where_the_server_does \
        -- --nocapture
fi
cargo build --release --example fuzz
exec ./target/release/examples/fuzz "${1:-10000000}" "${2:-all}" "${3:-1}"
