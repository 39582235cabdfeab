#!/usr/bin/env bash
# The plain loop of docs/evaluation.md (benchmarks/gan_loop.py: no text, one object on a plain
# background) at lengths the CPU cannot give, in one prepared GPU run of about BUDGET seconds
# (default 480): does any generator-discriminator pair draw crisp shapes with 10-50x the CPU
# runs' steps, and does width (16 -> 64 channels) decide it?
#  1. build the larger `shapes` set the loop's CPU runs used (50,000 images, seed 5);
#  2. run one loop per entry of VARIANTS ("NAME=ARGS;NAME=ARGS") side by side on the GPU, each
#     with --simple --ema EMA and scored every EVERY steps, until the budget is spent;
#  3. print each run's score rows (crisp: objects drawn with the shapes classifier's confidence
#     > 0.9; real images 0.996) and copy its log and last sample grids into $OUT/NAME/.
# Usage (from the repository root, on a machine with a GPU): bash benchmarks/gpu_loop.sh
# A dry run on the CPU: DEVICE=cpu BUDGET=60 STEPS=4 EVERY=2 NUM_TRAIN=200 bash benchmarks/gpu_loop.sh
set -euo pipefail
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-480}
STEPS=${STEPS:-60000}
EVERY=${EVERY:-2500}
EMA=${EMA:-0.999}
NUM_TRAIN=${NUM_TRAIN:-50000}
DEVICE=${DEVICE:-cuda}
SN="--g-arch resnet --d-arch resnet --loss hinge --beta1 0 --beta2 0.9 --lr 1e-4 --lr-d 4e-4"
VARIANTS=${VARIANTS:-"preset=;ttur=--lr 1e-4 --lr-d 4e-4;preset64=--gf 64 --df 64;sngan=$SN;\
sngan64=$SN --gf 64 --df 64;dcgan64=--g-arch dcgan --d-arch dcgan --gf 64 --df 64;\
sngan64ndis5=$SN --gf 64 --df 64 --n-dis 5 --lr 2e-4 --lr-d 2e-4"}
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
WORK=$(mktemp -d)
python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')"
python3 -m attngan.cli -q data shapes --out "$WORK/big" --num-train "$NUM_TRAIN" --num-test 10 \
  --seed 5 --workers 16
echo "[$(elapsed) s] data built"
left=$((BUDGET - $(elapsed) - 20))
left=$((left > 20 ? left : 20))
names=()
IFS=';' read -r -a entries <<< "$VARIANTS"
for entry in "${entries[@]}"; do
  name=${entry%%=*}
  names+=("$name")
  read -r -a more <<< "${entry#*=}"
  timeout -s TERM "$left" python3 benchmarks/gan_loop.py "$WORK/$name" --data "$WORK/big" \
    --simple --device "$DEVICE" --steps "$STEPS" --every "$EVERY" --ema "$EMA" "${more[@]}" \
    > "$WORK/$name.log" 2>&1 &
done
wait || true
for name in "${names[@]}"; do
  mkdir -p "$OUT/$name"
  cp "$WORK/$name.log" "$OUT/$name/"
  for kind in step ema; do  # the last grid of the generator and of its average
    last=$(find "$WORK/$name" -name "$kind-*.png" | sort | tail -1)
    if [ -n "$last" ]; then cp "$last" "$OUT/$name/"; fi
  done
  echo "== $name: $(grep -m1 images "$WORK/$name.log" || true)"
  grep '^step' "$WORK/$name.log" || tail -5 "$WORK/$name.log"
done
echo "[$(elapsed) s] done; logs and grids in $OUT/"
