#!/usr/bin/env bash
# Rebuilds the bundled demo from scratch (hours on a 2-core CPU; minutes on a GPU):
# trains (or resumes) the generator and the segmenter, exports them to models/, dissects
# layer4 into dissect/demo, and prints the quality figures. The shipped files came from
# exactly these commands; models/provenance.json records the step count used.
#
# The generator trains narrow (cheap) until WIDEN_AT, is widened at 16² and above with
# `train-demo widen` (same outputs, more room for small details), trains on to EMA_AT, and
# from there keeps a shorter moving average of G (β 0.99 instead of 0.998: the long average
# of a generator that moves this fast drew buildings about a fifth too small), and from
# LR_AT on halves the learning rate, so that G swings less between checkpoints, and halves
# it again from LR2_AT. From KEEP_FROM to GAN_STEPS every checkpoint keeps its live and EMA
# generators, and `train-demo pick` ships the one closest to the rendered scenes on a
# validation split (ids and scenes from 100000 on), not on the figures eval-demo reports.
#
#   scripts/make_demo.sh [GAN_STEPS=25000] [RUN_DIR=runs]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$GANPAINT_ROOT/scripts/setup.sh"
cd "$GANPAINT_ROOT"
STEPS="${1:-25000}"
WIDEN_AT=15000
EMA_AT=16400
LR_AT=17600
LR2_AT=20400
KEEP_FROM=23000
NARROW=256,256,64,32,16
WIDE=256,256,128,64,32
RUNS="${2:-runs}"
BIN=./target/release/ganpaint
export OMP_WAIT_POLICY=PASSIVE

# widen keeps the narrow checkpoint under this name, which marks the run as widened.
if [ ! -f "$RUNS/demo-gan/checkpoint-step$WIDEN_AT-${NARROW//,/_}.safetensors" ]; then
  $BIN train-demo gan --run "$RUNS/demo-gan" --steps "$WIDEN_AT" --bf16 --seed 1 \
    --channels "$NARROW" --checkpoint-every 200 --sample-every 250
  $BIN train-demo widen --run "$RUNS/demo-gan" --channels "$WIDE"
fi
$BIN train-demo gan --run "$RUNS/demo-gan" --steps "$EMA_AT" --bf16 --seed 1 \
  --channels "$WIDE" --checkpoint-every 200 --sample-every 250
$BIN train-demo gan --run "$RUNS/demo-gan" --steps "$LR_AT" --bf16 --seed 1 \
  --channels "$WIDE" --ema-beta 0.99 --checkpoint-every 200 --sample-every 250
$BIN train-demo gan --run "$RUNS/demo-gan" --steps "$LR2_AT" --bf16 --seed 1 \
  --channels "$WIDE" --ema-beta 0.99 --lr 0.001 --checkpoint-every 200 --sample-every 250
$BIN train-demo gan --run "$RUNS/demo-gan" --steps "$STEPS" --bf16 --seed 1 \
  --channels "$WIDE" --ema-beta 0.99 --lr 0.0005 --keep-from "$KEEP_FROM" \
  --checkpoint-every 200 --sample-every 250
[ -f models/demo_segmenter.safetensors ] || \
  $BIN train-demo segmenter --out models/demo_segmenter.safetensors --steps 1500 --seed 1
$BIN train-demo pick --run "$RUNS/demo-gan" --out models/demo_generator.safetensors \
  --first-sample 100000 --samples 3000
$BIN dissect --out dissect/demo --samples 2000 --causal-samples 64
$BIN eval-edits --project dissect/demo --samples 100
$BIN eval-demo --out out/eval-demo
