#!/usr/bin/env bash
# Runs the fuzz targets one after another on one core: each until SECONDS_PER_TARGET have passed or 10 M inputs ran,
# whichever comes first, with libFuzzer's memory limit. Corpora grow in fuzz/corpus/<target> (seeded from
# fuzz/seeds/<target>), crashes land in fuzz/artifacts/<target>, logs in fuzz/logs/. Needs `cargo install cargo-fuzz`
# and a nightly toolchain.
#   fuzz/run.sh [SECONDS_PER_TARGET] [target ...]
set -u
cd "$(dirname "$0")/.."
seconds=${1:-3600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(npy_read safetensors_load image_load onnx_parse cli_args)
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    seeds="fuzz/seeds/$t"
    [ "$t" = onnx_parse ] && seeds="fixtures/onnx/light"
    # Allocations over 2 GB and inputs that take over 10 s are findings; the RSS limit is the budget.
    cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "$seeds" -- \
        -max_total_time="$seconds" -runs=10000000 -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -max_len=65536 -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1
    echo "$t: exit $? $(grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "fuzz/logs/$t.log" | tr '\n' ' ')"
done
