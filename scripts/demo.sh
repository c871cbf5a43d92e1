#!/usr/bin/env bash
# The README's main command. Builds microseg and shows, for the example wave in
# deploy/examples/, what microseg writes to NSX in each phase of the rollout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin microseg
AT="${1:-2027-02-10T00:00:00Z}"
echo "== microseg plan -f deploy/examples --cluster demo --at $AT"
./target/debug/microseg plan -f deploy/examples --cluster demo --at "$AT"
