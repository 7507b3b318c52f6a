#!/usr/bin/env bash
# The GPU checks in one bounded run, for a machine that is lent for a short time: the CUDA
# tests, the speed tables of benchmarks/README.md, and a short real training run. Every step
# has its own time limit (9 min 30 s in all), so one slow step cannot eat the others.
# Everything comes back in at most five files (the device tool returns eight): the
# steps' output in $OUT/log.txt, one line per step in $OUT/summary.md, and the training run's
# config.json, metrics.jsonl and generator.safetensors in $OUT/run_mse/.
#
#   bash benchmarks/gpu_check.sh                     # on the GPU machine, from the repo root
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh  # the same plumbing on a CPU, tiny sizes
#
# Data (not in the repository; copy it, not links to it, into the ignored folder .gpu/):
#   .gpu/train/      training images, e.g. ../shared/data/train/t91 (9 MiB)
#   .gpu/vgg19.safetensors     the VGG19 features for the gan rows (38 MiB)
#   .gpu/bench/set5/ Set5 (HR and LR_x4) for the validation of the training run (1 MiB)
# With the checkout (13 MiB) that is 61 MiB of the 64 MiB a device call may send.
# Missing data skips the steps that need it, with a line in the summary.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
SUMMARY="$OUT/summary.md"
echo "# gpu_check on $DEVICE, $(date -u +%Y-%m-%dT%H:%MZ)" >"$SUMMARY"
python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" >>"$SUMMARY" 2>&1

step() {  # step NAME SECONDS COMMAND...: run with a limit, log, and record rc and time
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name: $*" >>"$OUT/log.txt"
  timeout -s INT -k 20 "$limit" "$@" >>"$OUT/log.txt" 2>&1
  local rc=$?
  echo "- $name: rc $rc, $((SECONDS - start)) s (limit $limit s): \`$*\`" >>"$SUMMARY"
}

if [ "$QUICK" = 1 ]; then
  SIZES=32,48; TILES=0,32; BIG=800x600; PNG=1000x800; TRAIN_ARGS=(--batch-size 2 --patch-size 48 --steps 3 --warmup 1 --loader-batches 2)
  RUN_STEPS=4; RUN_ARGS=(--batch-size 2 --patch-size 48 --val-every 2 --checkpoint-every 2)
else
  SIZES=256,512; TILES=0,256; BIG=4000x3000; PNG=8000x6000; TRAIN_ARGS=(--batch-size 16 --patch-size 96 --steps 20)
  RUN_STEPS=100000; RUN_ARGS=(--batch-size 16 --patch-size 96 --val-every 1000 --checkpoint-every 1000)
fi

if [ "$DEVICE" != cpu ]; then
  step tests_cuda 80 python3 -m pytest -q -p no:cacheprovider tests/test_core.py tests/test_train.py -k "cuda"
fi
step upscale_speed 110 python3 benchmarks/upscale_speed.py --device "$DEVICE" --sizes "$SIZES" --tiles "$TILES" --compile
step upscale_speed_rrdb 60 python3 benchmarks/upscale_speed.py --device "$DEVICE" --model random-rrdb --sizes "$SIZES" --tiles 0 --repeats 2
if [ -d .gpu/train ]; then
  GAN=(--skip-gan)
  [ -f .gpu/vgg19.safetensors ] && GAN=(--vgg-weights .gpu/vgg19.safetensors)
  step train_speed 100 python3 benchmarks/train_speed.py --device "$DEVICE" --data .gpu/train "${TRAIN_ARGS[@]}" "${GAN[@]}"
else
  echo "- train_speed: skipped (no .gpu/train)" >>"$SUMMARY"
fi
step png_encode 40 python3 benchmarks/png_encode.py --size "$PNG" --threads 1,4,8 --repeats 1
step large_image 60 python3 benchmarks/large_image.py --device "$DEVICE" --size "$BIG"
if [ -d .gpu/train ]; then
  VAL=()
  [ -d .gpu/bench/set5 ] && VAL=(--val set5 --data-dir .gpu/bench)
  # SIGINT at the limit: the trainer saves its checkpoint and exports generator.safetensors.
  step train_mse 120 python3 -m srgan_cli train --stage mse --init weights/srresnet_x4.safetensors \
    --data .gpu/train --out "$OUT/run_mse" --steps "$RUN_STEPS" --device "$DEVICE" \
    --precision bf16 --channels-last "${RUN_ARGS[@]}" "${VAL[@]}"
  rm -f "$OUT/run_mse/checkpoint.pt" "$OUT/run_mse/generator_best.safetensors"  # checkpoint: too large to bring back
else
  echo "- train_mse: skipped (no .gpu/train)" >>"$SUMMARY"
fi
cat "$SUMMARY"
