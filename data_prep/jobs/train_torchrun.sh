#!/bin/bash
# DDP without SLURM: torchrun starts one process per GPU (or per CPU slot with --accelerator cpu, gloo);
# Lightning reads torchrun's RANK / WORLD_SIZE / MASTER_ADDR environment.
#   bash data_prep/jobs/train_torchrun.sh                 # one node, 2 GPUs
# On several nodes run the same command on each with --nnodes=N --node-rank=I --rdzv-endpoint=HOST:29500
# and --num-nodes N.
set -euo pipefail
torchrun --standalone --nnodes=1 --nproc-per-node=2 -m darkflow train --data sm.h5 --model convvae \
    --flow planar --out runs/convvae_planar_torchrun --accelerator gpu --devices 2 --num-nodes 1 \
    --strategy ddp -q
