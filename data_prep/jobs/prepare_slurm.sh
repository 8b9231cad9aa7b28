#!/bin/bash
# Convert many input files as a SLURM job array of N shards, then merge them (chained with afterok).
#   bash data_prep/jobs/prepare_slurm.sh            # submits both jobs from a login node
# Edit the four variables; every shard reads the whole input list and converts its 1/N of the events.
set -euo pipefail
N_SHARDS=16
INPUTS="/data/sm/*.root"
OUT_DIR=/scratch/$USER/darkflow
LABEL=sm

mkdir -p "$OUT_DIR/shards" "$OUT_DIR/logs"
array=$(sbatch --parsable --job-name=darkflow-prepare --array=0-$((N_SHARDS - 1)) \
    --cpus-per-task=1 --mem=4G --time=02:00:00 --output="$OUT_DIR/logs/prepare_%a.log" \
    --wrap="darkflow prepare $INPUTS --label $LABEL --shard \$SLURM_ARRAY_TASK_ID/$N_SHARDS -q \
            --out $OUT_DIR/shards/shard_\$SLURM_ARRAY_TASK_ID.h5")
SHARDS=$(for i in $(seq 0 $((N_SHARDS - 1))); do printf '%s ' "$OUT_DIR/shards/shard_$i.h5"; done)
sbatch --job-name=darkflow-merge --dependency=afterok:"$array" --cpus-per-task=1 --mem=2G --time=01:00:00 \
    --output="$OUT_DIR/logs/merge.log" \
    --wrap="darkflow merge $SHARDS--out $OUT_DIR/$LABEL.h5 --label $LABEL"
