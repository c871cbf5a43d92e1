#!/usr/bin/env bash
# Benchmark of the NSX client against the simulator: 1,000 applications of 10 rules each.
# Prints NSX calls by kind, wall time, calls per application and the achieved request rate.
# Knobs (environment): NSX_BENCH_APPS, NSX_BENCH_RULES, NSX_BENCH_RATE, NSX_BENCH_CONCURRENCY,
# NSX_BENCH_PARALLEL (see benches/nsx.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench nsx "$@"
