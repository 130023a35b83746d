#!/usr/bin/env bash
# The first minutes on a GPU (README "On a GPU"): does every method run on CUDA, and how fast does the Trainer
# train there? Run from the repository root after `pip install -e ".[test]"`, with the CIFAR-10 (JPEG subset) at
# ../shared/data/cifar10-jpeg-10k.npz (the gpu-check preset reads it there). Everything lands in $1
# (default results/gpu-check): the sweep's runs and report, perf.txt and perf.json.
set -euo pipefail
out=${1:-results/gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# 1. every method, one short epoch of ResNet-18 on 2,000 images (channels-last, bf16 autocast: the defaults);
#    the same again compiled, into its own folder (compile is not part of a run's id), to see whether it pays
python -m benchmarks sweep --preset gpu-check --device cuda --results "$out" --wandb disabled
python -m benchmarks sweep --preset gpu-check --device cuda --results "$out-compile" --compile --wandb disabled
python -m benchmarks report --results "$out" --wandb disabled
python -m benchmarks report --results "$out-compile" --wandb disabled
# 2. where the time goes: statistics pass vs matmul, growth step vs gromo, TINY run vs fixed, training throughput
python -m benchmarks perf --json "$out/perf.json" | tee "$out/perf.txt"
