#!/bin/bash
# Multi-node GPU training with Lightning DDP under SLURM: one task per GPU; Lightning reads the SLURM
# environment (SLURM_PROCID, SLURM_NTASKS, the node list) to set up the process group.
#   sbatch data_prep/jobs/train_ddp_slurm.sh
# --nodes must equal --num-nodes, --ntasks-per-node and --gpus-per-node must equal --devices.
#SBATCH --job-name=darkflow-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --output=logs/train_%j.log
set -euo pipefail
# training.batch_size is the global batch: each of the 8 processes takes 1/8 of every batch.
srun darkflow train --data /scratch/$USER/darkflow/sm.h5 --model convvae --flow planar \
    --out runs/convvae_planar_ddp --accelerator gpu --devices 4 --num-nodes 2 --strategy ddp \
    --batch-size 2048 --epochs 50 -q
