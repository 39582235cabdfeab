#!/usr/bin/env bash
# GAN training speed on one GPU, in one prepared run of under 10 minutes (one H100 or H200); every
# figure is a ratio against commit a65b752's plain step measured in the same run
# (benchmarks/train_step.py, whose rows are worker processes taking turns):
#   1. the birds iteration at batch 20 (launch-bound: about 2 ms of work per image): a65b752;
#      plain float32; train.fast_layers; + channels-last; bf16 + channels-last; + torch.compile;
#      + CUDA graphs (train.compile_mode=reduce-overhead), with peak memory and first-step losses;
#   2. throughput at larger batches (bf16 + channels-last): 64, then the largest batch that the
#      memory of the first two predicts to fit in 85 % of the card (and half of it if that fails);
#   3. the data loader with 0, 4 and 8 workers beside the fastest training rate.
# Usage (repository root, on the GPU machine): bash benchmarks/gpu_speed.sh | tee gpu-speed.txt
# Dry run on the CPU (tiny networks, batch 2, every step and variant once; minutes):
#   DRY_RUN=1 bash benchmarks/gpu_speed.sh
set -euo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STEP=(python3 benchmarks/train_step.py --work "$WORK")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  DEVICE=cpu BATCH=2 FIRST=4 CAP=8 LIMIT=1500 SWEEP_LIMIT=600 BUDGET=100000
  TIMING=(--rounds 1 --repeats 1 --warmup 1 --threads 1
          --set model.gf=4 model.df=4 model.residual_blocks=1)
  LOADER=(--workers 0 1 --images 16)
else  # seconds: step 1 at most LIMIT, a sweep row at most SWEEP_LIMIT, none after BUDGET
  DEVICE=cuda BATCH=20 FIRST=64 CAP=4096 LIMIT=300 SWEEP_LIMIT=110 BUDGET=420
  TIMING=(--rounds 3 --repeats 10 --warmup 3)
  LOADER=(--workers 0 4 8 --images 1000)
fi
python3 -c "import sys, torch; print('torch', torch.__version__, '| GPU:',
  torch.cuda.get_device_name(0) if sys.argv[1] == 'cuda' else 'none (dry run on the CPU)')" \
  "$DEVICE"

echo "== 1. birds iteration, batch $BATCH"
timeout "$LIMIT" "${STEP[@]}" --device "$DEVICE" --batch "$BATCH" "${TIMING[@]}" \
  --variants plain fast fast_cl bf16_cl bf16_cl_compile bf16_cl_graphs | tee "$WORK/step.txt"

echo "== 2. larger batches, bf16 + channels-last"
sweep() {  # batch: time the bf16_cl row (and a65b752's) at it, print the table
  if [[ $SECONDS -gt $BUDGET ]]; then echo "  batch $1: skipped (time budget)"; return; fi
  timeout "$SWEEP_LIMIT" "${STEP[@]}" --device "$DEVICE" --batch "$1" "${TIMING[@]}" \
    --no-flops --variants bf16_cl > "$WORK/batch-$1.txt" 2>&1 \
    || echo "  batch $1: did not finish (out of memory or time): $(tail -1 "$WORK/batch-$1.txt")"
  sed -n '/ rounds x /,$p' "$WORK/batch-$1.txt" | sed "s/^/  batch $1 | /"
}
# the memory column of a table's bf16_cl row: variant, images/s, vs, of peak, memory, GB, gap
memory() { awk '$1 == "bf16_cl" && $6 == "GB" {print $5}' "$1" 2>/dev/null || true; }
# memory is linear in the batch: the largest batch (a multiple of 8) in 85 % of the card
predict() {  # device batch1 memory1 batch2 memory2 cap
  python3 -c "import sys, torch
device, b1, m1, b2, m2, cap = sys.argv[1], *map(float, sys.argv[2:])
total = torch.cuda.get_device_properties(0).total_memory / 1024**3 if device == 'cuda' else 0
per_image = (m2 - m1) / (b2 - b1)
fits = (0.85 * total - (m2 - per_image * b2)) / per_image if per_image > 0 else 2 * b2
print(int(min(cap, max(b2, fits))) // 8 * 8)" "$@"
}
sweep "$FIRST"
small=$(memory "$WORK/step.txt")
large=$(memory "$WORK/batch-$FIRST.txt")
if [[ -n "$small" && -n "$large" ]]; then
  biggest=$(predict "$DEVICE" "$BATCH" "$small" "$FIRST" "$large" "$CAP")
  echo "  predicted to fit: batch $biggest ($small GB at batch $BATCH, $large GB at $FIRST)"
  if [[ "$biggest" -gt "$FIRST" ]]; then
    sweep "$biggest"
    [[ -n "$(memory "$WORK/batch-$biggest.txt")" ]] || sweep $((biggest / 16 * 8))
  fi
fi

echo "== 3. data loader beside the fastest training rate at batch $BATCH"
rate=$(awk '$3 ~ /^[0-9.]+x$/ && $2 + 0 > best {best = $2 + 0} END {print best}' "$WORK/step.txt")
python3 benchmarks/data_loading.py "${LOADER[@]}" --batch "$BATCH" --work "$WORK" \
  ${rate:+--train-rate "$rate"}
echo "gpu_speed.sh: done in $SECONDS s"
