#!/usr/bin/env bash
# Train the bundled `shapes` model longer on a GPU, in one prepared run: build `shapes`, train
# DAMSM with the `shapes` preset and the GAN with the preset for GAN_EPOCHS epochs (default 24,
# about 10,000 steps; at the 22 steps/s an H100 ran the shapes GAN at, about 8 minutes: set
# GAN_EPOCHS to fit the device time), evaluate semantic accuracy, R-precision and IS on the test
# captions, and copy the model folder and the results to $OUT (or ./gpu-out). Then, on the CPU:
#   cp -r gpu-out/model/. src/attngan/assets/shapes-model/ && attngan evaluate --data data/shapes
# Usage (from the repository root, on a machine with a GPU): bash benchmarks/gpu_bundled.sh
set -euo pipefail
OUT=${OUT:-gpu-out}
GAN_EPOCHS=${GAN_EPOCHS:-24}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
SETS=(data.root="$WORK/shapes" data.workers=6)
attngan() { python3 -m attngan.cli "$@"; }
seconds() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }

python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
t0=$(date +%s.%N)
attngan -q data shapes --out "$WORK/shapes" --workers 8
echo "shapes data built in $(seconds "$t0") s"
t0=$(date +%s.%N)
attngan train-damsm --device cuda --runs "$WORK/runs" --no-progress --set "${SETS[@]}" \
  > "$OUT/damsm.txt" 2>&1 || { tail -20 "$OUT/damsm.txt"; exit 1; }
echo "DAMSM: $(seconds "$t0") s; $(grep -h 'finished' "$OUT/damsm.txt")"
t0=$(date +%s.%N)
attngan train --device cuda --damsm "$WORK/runs/00000-shapes-damsm" --runs "$WORK/runs" \
  --no-progress --set "${SETS[@]}" train.epochs="$GAN_EPOCHS" train.sample_every=2000 \
  > "$OUT/gan.txt" 2>&1 || { tail -20 "$OUT/gan.txt"; exit 1; }
echo "GAN ($GAN_EPOCHS epochs): $(seconds "$t0") s"
RUN="$WORK/runs/00001-shapes-gan"
cp -r "$RUN/model" "$OUT/model"
last=$(ls "$RUN/samples" | grep -v attention | grep step- | tail -1)
cp "$RUN/samples/$last" "$OUT/samples.png"
attngan evaluate --model "$RUN/model" --data "$WORK/shapes" --device cuda --no-progress \
  --metrics semantic r_precision is --out "$OUT/eval.json"
