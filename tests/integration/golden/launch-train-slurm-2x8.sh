#!/bin/bash
#SBATCH --job-name=tunewright-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --partition=gpu
#SBATCH --time=04:00:00
#SBATCH --account=llm
#SBATCH --output=/WS/logs/launch/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --exclusive
set -euo pipefail
export NCCL_DEBUG=WARN
export NCCL_SOCKET_IFNAME=ib0
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
resume=""
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then resume="--resume latest"; fi
srun --ntasks-per-node=1 --kill-on-bad-exit=1 --container-image=nvcr.io/nvidia/pytorch:25.01-py3 --container-mounts=/lustre:/lustre \
  torchrun --nnodes "$SLURM_JOB_NUM_NODES" --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint "$head_node:29500" --rdzv-id "$SLURM_JOB_ID" \
  -m tunewright train -c /WS/configs/sft-lora.yaml -w /WS training.max_steps=100 $resume
