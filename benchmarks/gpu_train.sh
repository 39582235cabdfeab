#!/usr/bin/env bash
# The training path on a GPU, end to end, in one prepared run: build `shapes`, train DAMSM and the
# GAN with the `shapes` preset on CUDA, generate on CUDA and on the CPU from the same seed and
# compare, and print the wall time of each part. Writes logs and sample pictures under $OUT (or
# ./gpu-out). Usage (from the repository root, on a machine with a GPU):
#   bash benchmarks/gpu_train.sh [extra --set values for both runs, e.g. data.workers=8]
set -euo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
SETS=(data.root="$WORK/shapes" data.workers=6 "$@")
attngan() { python3 -m attngan.cli "$@"; }
seconds() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }

python3 - <<'EOF'
import torch
print("torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
EOF
t0=$(date +%s.%N)
attngan -q data shapes --out "$WORK/shapes" --workers 8
echo "shapes data built in $(seconds "$t0") s"

t0=$(date +%s.%N)
attngan train-damsm --device cuda --runs "$WORK/runs" --no-progress --set "${SETS[@]}" \
  > "$OUT/damsm.txt" 2>&1 || { tail -20 "$OUT/damsm.txt"; exit 1; }
echo "DAMSM (shapes preset) on CUDA: $(seconds "$t0") s"
grep -h "R-precision" "$OUT/damsm.txt" | sed 's/^/  /'

t0=$(date +%s.%N)
attngan train --device cuda --damsm "$WORK/runs/00000-shapes-damsm" --runs "$WORK/runs" \
  --no-progress --set "${SETS[@]}" > "$OUT/gan.txt" 2>&1 || { tail -20 "$OUT/gan.txt"; exit 1; }
echo "GAN (shapes preset) on CUDA: $(seconds "$t0") s"
grep -h "steps/s" "$OUT/gan.txt" | tail -2 | sed 's/^/  /'
RUN="$WORK/runs/00001-shapes-gan"
last=$(ls "$RUN/samples" | grep -v attention | grep step- | tail -1)
cp "$RUN/samples/$last" "$OUT/samples.png"
cp "$RUN/samples/${last%.png}-attention.png" "$OUT/samples-attention.png"
cp "$RUN/samples/reals.png" "$OUT/reals.png"

python3 - "$RUN/model" "$OUT" <<'EOF'
import sys, time, torch
from attngan import Pipeline
model, out = sys.argv[1], sys.argv[2]
captions = ["a large red circle in the top left corner", "a small blue square at the bottom",
            "a green triangle above a yellow star"]
results = {}
gpu = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU stands in when there is none
for key, device in (("cuda", gpu), ("cpu", "cpu")):
    pipe = Pipeline.from_pretrained(model, device=device)
    pipe(captions, num_images=2, seed=0)  # warm-up
    start = time.perf_counter()
    results[key] = pipe(captions, num_images=4, seed=3)
    print(f"generate on {device}: {12 / (time.perf_counter() - start):.1f} images/s (batch 12)")
diff = (results["cuda"].images[-1] - results["cpu"].images[-1]).abs().max().item()
print(f"CUDA vs CPU images, same seed: max |difference| {diff:.2e}")
from attngan.visualize import captioned_grid
grid = captioned_grid(results["cuda"].pil(), results["cuda"].captions, columns=4)
grid.save(f"{out}/generated.png")
results["cuda"].attention_figure(0).save(f"{out}/generated-attention.png")
EOF
ls "$OUT"
