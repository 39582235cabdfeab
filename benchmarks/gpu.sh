#!/usr/bin/env bash
# The GPU path, checked and timed in one prepared run (about 6 minutes on one H100): the GAN
# training iteration at the birds config, batch 20, plain float32 against the fast path (bf16
# autocast + channels-last, then also torch.compile), images/s and peak memory; generation at
# 256 px (the fast paths must give the plain path's images, or the script stops); and the data
# loader's images/s with 0, 4 and 8 workers beside the fast path's training rate.
# Usage (from the repository root, on a machine with a GPU): bash benchmarks/gpu.sh | tee gpu.txt
set -euo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0))"
python3 benchmarks/train_step.py --device cuda --batch 20 --rounds 2 --repeats 10 --warmup 3 \
  --variants plain bf16_cl bf16_cl_compile --work "$WORK" | tee "$WORK/train.txt"
rate=$(awk '$1 == "bf16_cl" {print $2}' "$WORK/train.txt")
python3 benchmarks/generate.py --device cuda --rounds 3 --calls 8
python3 benchmarks/data_loading.py --workers 0 4 8 --images 1000 --batch 20 --work "$WORK" \
  ${rate:+--train-rate "$rate"}
