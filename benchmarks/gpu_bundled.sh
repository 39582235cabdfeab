#!/usr/bin/env bash
# Train candidates for the bundled `shapes` model on one GPU, in one prepared run of about
# BUDGET seconds (default 480):
#  1. build `shapes`;
#  2. train DAMSM with the `shapes` preset, shape hard negatives (SWAP_WORDS) and the --set
#     values in DAMSM_SETS, and score how well it tells shapes and colours apart
#     (benchmarks/damsm_attributes.py);
#  3. train one GAN per entry of VARIANTS (NAME:KEY=V,KEY=V) side by side on the same GPU until
#     the budget is spent (each stops with SIGTERM, which saves a checkpoint);
#  4. evaluate semantic accuracy, R-precision and IS of each newest checkpoint on the test
#     captions, and pack each variant's model, log and results into $OUT/NAME.tar.gz.
# Then, on the CPU, for the variant you pick:
#   tar xzf gpu-out/NAME.tar.gz -C gpu-out
#   cp gpu-out/NAME/model/* src/attngan/assets/shapes-model/ && attngan evaluate --data data/shapes
# Usage (from the repository root, on a machine with a GPU): bash benchmarks/gpu_bundled.sh
set -euo pipefail
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-480}
# docs/evaluation.md, "Critics that ask for shapes": with every shapes image's blob twin as a
# paired fake (train.d_negatives, on from step D_FROM so the generator first learns the layout)
# the discriminators prefer shapes over blobs in 99-100 % of scenes, yet 1,000 CPU steps of the
# preset's generator still drew blobs. These test, at GPU lengths, the preset beside the twins
# with the preset's generator and with more generator capacity (2x and 4x the width, 2 residual
# blocks). All on the DAMSM with the shape hard negatives.
D_FROM=${D_FROM:-2000}
TW="train.d_negatives=1,train.d_negatives_from=$D_FROM"
VARIANTS=${VARIANTS:-"preset:train.damsm_lambda=5 twins:$TW twins32:$TW,model.gf=32,model.df=32 twins64:$TW,model.gf=64,model.df=64 twinsres2:$TW,model.residual_blocks=2"}
WORKERS=${WORKERS:-3}  # data workers per GAN
DAMSM_SETS=${DAMSM_SETS:-}
DEVICE=${DEVICE:-cuda}  # cpu for a dry run here
EVAL_ARGS=${EVAL_ARGS:-}  # e.g. --num-images 100 for a dry run
START=$(date +%s)
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
RES="$WORK/results"
mkdir -p "$RES"
# shape hard negatives (damsm.swap_words) for DAMSM and every GAN; SWAP_WORDS="" turns them off
SWAP_WORDS=${SWAP_WORDS-"circle/disc square triangle star heart cross/plus diamond/rhombus hexagon"}
# the blob twins (read only by variants with train.d_negatives > 0)
SETS=(data.root="$WORK/shapes" data.workers="$WORKERS" "damsm.swap_words=$SWAP_WORDS"
      data.negatives="$WORK/twins")
attngan() { python3 -m attngan.cli "$@"; }
elapsed() { echo $(($(date +%s) - START)); }

python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')"
attngan -q data shapes --out "$WORK/shapes" --workers 16
echo "[$(elapsed) s] shapes data built"
attngan -q data shapes-twins --data "$WORK/shapes" --out "$WORK/twins" --workers 16
echo "[$(elapsed) s] blob twins built"
# shellcheck disable=SC2086
attngan train-damsm --device "$DEVICE" --runs "$WORK/runs" --no-progress \
  --set "${SETS[@]}" data.workers=14 $DAMSM_SETS > "$RES/damsm.txt" 2>&1 \
  || { tail -20 "$RES/damsm.txt"; exit 1; }
DAMSM="$WORK/runs/00000-shapes-damsm"
echo "[$(elapsed) s] DAMSM: $(grep -h 'finished' "$RES/damsm.txt")"
python3 benchmarks/damsm_attributes.py --model "$DAMSM/model" --data "$WORK/shapes" \
  | tee "$RES/damsm_attributes.txt"

left=$((BUDGET - $(elapsed) - 60))  # keep a minute for the evaluations
left=$((left > 30 ? left : 30))
echo "[$(elapsed) s] GANs {$VARIANTS}, side by side, for $left s"
names=()
for variant in $VARIANTS; do
  name=${variant%%:*}
  names+=("$name")
  IFS=, read -r -a more <<< "${variant#*:}"
  timeout -s TERM "$left" python3 -m attngan.cli train --device "$DEVICE" --damsm "$DAMSM" \
    --runs "$WORK/runs-$name" --no-progress --set "${SETS[@]}" train.epochs=1000 \
    train.sample_every=2000 train.checkpoint_every=2000 "${more[@]}" \
    > "$RES/gan-$name.txt" 2>&1 &
done
wait || true
ckpts=()
for name in "${names[@]}"; do
  ckpt=$(ls -d "$WORK/runs-$name"/*/checkpoints/step-* | tail -1)
  ckpts+=("$ckpt")
  mkdir -p "$RES/$name/model"
  cp "$ckpt"/{generator,text_encoder,image_encoder}.safetensors "$ckpt"/{model.json,vocab.json} \
    "$RES/$name/model/"
  echo "$name: stopped at $(basename "$ckpt"); $(grep -h 'steps/s' "$RES/gan-$name.txt" | tail -1)"
  # shellcheck disable=SC2086
  attngan evaluate --model "$ckpt" --data "$WORK/shapes" --device "$DEVICE" --no-progress \
    --metrics semantic r_precision is shape_realism stage_agreement \
    --out "$RES/$name/eval.json" $EVAL_ARGS > "$RES/$name/eval.txt" 2>&1 &
done
wait || true
python3 benchmarks/d_shape_probe.py "${ckpts[@]}" > "$RES/d_shape_probe.txt" 2>&1 || true
cat "$RES/d_shape_probe.txt"
for name in "${names[@]}"; do echo "== $name"; cat "$RES/$name/eval.txt"; done
for name in "${names[@]}"; do tar czf "$OUT/$name.tar.gz" -C "$RES" "$name" "gan-$name.txt"; done
tar czf "$OUT/damsm.tar.gz" -C "$RES" damsm.txt damsm_attributes.txt d_shape_probe.txt
echo "[$(elapsed) s] done; $OUT/{NAME,damsm}.tar.gz"
