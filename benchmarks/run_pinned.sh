#!/usr/bin/env bash
# Run the compute benchmarks side by side, each pinned to its own pair of CPU cores (taskset), so that a
# machine with many cores gives every script a quiet 2-core slice, as on the 2-core reference machine.
# Usage: benchmarks/run_pinned.sh [PYTHON]   (needs >= 12 cores; results in benchmarks/results/*.json,
# logs in benchmarks/results/logs/). On a 2-core machine run the scripts one after another instead (make bench).
set -u
PY=${1:-python3}
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results/logs
run() {  # run CORES NAME ARGS...
    local cores=$1 name=$2; shift 2
    ( DARKFLOW_BENCH_NOTE="pinned with taskset to cores $cores of a $(nproc)-core host, the compute benchmarks side by side (benchmarks/run_pinned.sh)" \
      OMP_NUM_THREADS=2 taskset -c "$cores" "$PY" "benchmarks/$name.py" "$@" \
        > "benchmarks/results/logs/$name.log" 2>&1; echo "$name exit $?" >> benchmarks/results/logs/status ) &
}
: > benchmarks/results/logs/status
run 0,1 bench_prepare
run 2,3 bench_generate
run 4,5 bench_flows
run 6,7 bench_train
run 8-11 bench_scale   # 2 Dask workers + the client writing the file + the scheduler
wait
cat benchmarks/results/logs/status
