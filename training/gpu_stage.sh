#!/bin/bash
# One GPU stage of the lite2 world model, as the shipped model's stages 4-5 were run (model card), made to be
# sent to a lent GPU machine (`device` tool) that has CUDA torch but no ALE: it installs the carried wheels,
# sweeps the training batch, continues from INIT for MINUTES, keeps the checkpoint that plays best
# (--select play, held-out probes on the val episodes), and scores it on the held-out canary.
#
# Prepare once on the CPU machine (both folders are git-ignored; carry them):
#   .whl/  pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#            --platform manylinux2014_x86_64 -d .whl ale-py gymnasium farama-notifications
#   .gpu/tokens.npz   the training tokens, np.savez_compressed (5.8 MB against 67 MB: the transfer limit):
#            python -c "import numpy as np; d=np.load('runs/lite2/atari_tokens_hires.npz'); \
#                       np.savez_compressed('.gpu/tokens.npz', **{k: d[k] for k in d.files})"
#   .gpu/heldout.npz  data/heldout_mix_3k.npz, compressed the same way
# usage: OUT=dir bash training/gpu_stage.sh DEVICE MINUTES SIZES...   e.g. cuda 7 16 32 64 128
# env: INIT (default assets/checkpoints/lite/wm), VQ (default assets/checkpoints/lite/vqvae), LR (5e-4),
#      EVAL_EVERY (2000: a play check costs seconds), EVAL_S (the canary's time limit, 60),
#      LOST_WEIGHT (0: windows with a lost ball are drawn 1 + event weight + this as often; 10 takes their
#      share of the windows from 18% to 42%), SEQ_FRAMES (12: frames per sequence clip; the lives digit counts
#      down 5-7 frames after the ball was last seen, so only targets with that much clip before them can time it)
set -u
DEV=$1; MIN=$2; shift 2; SIZES="$*"
INIT=${INIT:-assets/checkpoints/lite/wm}; VQ=${VQ:-assets/checkpoints/lite/vqvae}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
t0=$(date +%s)
timeout 120 python3 -m neuroplay.cli bench --preset lite2 --device "$DEV" --items train --train-batch $SIZES \
  --train-steps 8 --warmup 1 --steps 1 --json "$OUT/bench_train.json" 2>&1 | tail -6
# the smallest batch within 70% of the best targets/s (past that, a bigger batch only buys fewer steps)
B=$(python3 -c "
import json, sys
s = json.load(open('$OUT/bench_train.json'))['throughput']['train_sweep']
best = max(t['samples_per_s'] for t in s)
print(min((t for t in s if t['samples_per_s'] >= 0.7 * best), key=lambda t: t['batch_size'])['batch_size'])
") || B=32
echo "batch $B; sweep took $(( $(date +%s) - t0 )) s"
rm -rf /tmp/run; mkdir -p /tmp/run
timeout -s INT $(python3 -c "print(int($MIN * 60 + 120))") python3 -m neuroplay.cli train wm --data .gpu/tokens.npz \
  --preset lite2 --run-dir /tmp/run --vq-checkpoint "$VQ" --init "$INIT" --minutes "$MIN" --steps 1000000 \
  --batch-size "$B" --lr "${LR:-5e-4}" --warmup 100 --rollout-ratio 0.25 --split-seed 0 --select play --lost-weight "${LOST_WEIGHT:-0}" \
  --seq-frames "${SEQ_FRAMES:-12}" --eval-every "${EVAL_EVERY:-2000}" --save-every 1000 --image-every 1000000000 --no-progress-bar --device "$DEV" \
  > "$OUT/train.log" 2>&1
echo "train rc $?; $(( $(date +%s) - t0 )) s so far"; grep "wm step\|budget\|Error\|error" "$OUT/train.log" | tail -40
mkdir -p "$OUT/wm"; cp /tmp/run/wm/* "$OUT/wm/"; cp /tmp/run/wm_log.jsonl "$OUT/"
mkdir -p /tmp/ck; ln -sfn "$(realpath "$VQ")" /tmp/ck/vqvae; ln -sfn /tmp/run/wm /tmp/ck/wm
timeout "${EVAL_S:-60}" python3 -m neuroplay.cli eval --data .gpu/heldout.npz --checkpoint /tmp/ck --split all \
  --tier canary --device "$DEV" --json "$OUT/canary.json" > "$OUT/eval.log" 2>&1
echo "eval rc $?; $(( $(date +%s) - t0 )) s in all"; tail -30 "$OUT/eval.log"
