#!/usr/bin/env bash
# The GPU checks in one bounded run, for a machine that is lent for a short time: the CUDA
# tests, the speed tables of benchmarks/README.md, then a real training run that gets every
# second left of BUDGET (default 560 s). Every step has its own time limit, so one slow step
# cannot eat the others. The training run first trains for PROBE seconds, then sizes --steps
# from the speed it measured so that its cosine schedule ends inside the budget, and resumes.
# Everything comes back in at most seven files (the device tool returns eight, 16 MiB each):
# the steps' output in $OUT/log.txt, one line per step in $OUT/summary.md, and the training
# run's config.json, metrics.jsonl and generator.safetensors in $OUT/run_PLAN/ (a generator
# over 16 MB, such as RRDB's, in fp16 and in 15 MiB parts: cat generator.safetensors.part*).
#
#   bash benchmarks/gpu_check.sh                     # on the GPU machine, from the repo root
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh  # the same plumbing on a CPU, tiny sizes
#
# Data (not in the repository; copy it, not links to it, into the ignored folder .gpu/):
#   .gpu/train/      training images, e.g. all of ../shared/data/train (48 MiB)
#   .gpu/bench/set5/ Set5 (HR and LR_x4) for the validation of the training run (1 MiB)
#   .gpu/vgg19.safetensors     the VGG19 features for PLAN=gan and the gan rows of
#                    train_speed (38 MiB; then train/ must be small, e.g. t91 alone: the
#                    checkout (13 MiB), VGG19, t91 and Set5 make 61 of the 64 MiB a call sends)
# Missing data skips the steps that need it, with a line in the summary.
# Environment: BUDGET, PROBE (seconds); PLAN: mse (default: srresnet_x4 at 96 px, batch 64),
# gan (the SRGAN stage from srresnet_x4; needs .gpu/vgg19.safetensors, so a smaller train/) or
# rrdb (ESRGAN's RRDB, PSNR stage from scratch); TRAIN replaces the plan's `srgan train`
# options; GRAPHS=1 trains with --cuda-graphs (eager again if its probe saves nothing);
# BENCH=0 skips the speed tables, EXTRA=1 adds the PNG and large-image rows, COMPILE=1 the
# torch.compile rows.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET=${BUDGET:-560}
PROBE=${PROBE:-60}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.md"
echo "# gpu_check on $DEVICE, $(date -u +%Y-%m-%dT%H:%MZ)" >"$SUMMARY"
python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" >>"$SUMMARY" 2>&1
echo "cpus $(nproc)" >>"$SUMMARY"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log, and record rc and time
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name: $*" >>"$OUT/log.txt"
  timeout -s INT -k 20 "$limit" "$@" >>"$OUT/log.txt" 2>&1
  local rc=$?
  echo "- $name: rc $rc, $((SECONDS - start)) s (limit $limit s): \`$*\`" >>"$SUMMARY"
}

PLAN=${PLAN:-mse}
case "$PLAN" in
  mse)  START=(--stage mse --init weights/srresnet_x4.safetensors)
        RUN_DEFAULT="--batch-size 64 --patch-size 96 --lr 2e-4 --ema 0.999" ;;
  gan)  START=(--stage gan --init weights/srresnet_x4.safetensors --vgg-weights .gpu/vgg19.safetensors)
        RUN_DEFAULT="--batch-size 16 --patch-size 96 --lr 1e-4 --ema 0.995 --pixel-loss l1 --pixel-weight 0.2 --grid-weight 1" ;;
  rrdb) START=(--stage mse --arch rrdb)
        RUN_DEFAULT="--num-blocks 23 --batch-size 16 --patch-size 128 --lr 2e-4 --ema 0.999" ;;
  *) echo "PLAN must be mse, gan or rrdb" >&2; exit 2 ;;
esac
if [ "$QUICK" = 1 ]; then
  SIZES=32,48; TILES=0,32; BIG=800x600; PNG=1000x800
  TRAIN_ARGS=(--batch-size 2 --patch-size 48 --steps 3 --warmup 1 --loader-batches 2 --workers 0)
  [ "$PLAN" = rrdb ] && RUN_DEFAULT="--num-blocks 1 --num-features 8"
  read -r -a RUN_ARGS <<<"${TRAIN:-$RUN_DEFAULT --batch-size 2 --patch-size 48 --val-every 5 --checkpoint-every 5 --workers 0}"
else
  SIZES=256,512; TILES=0,256; BIG=4000x3000; PNG=8000x6000
  TRAIN_ARGS=(--batch-size 16 --patch-size 96 --steps 20 --workers 8)
  read -r -a RUN_ARGS <<<"${TRAIN:-$RUN_DEFAULT --workers 12 --val-every 1000 --checkpoint-every 2000}"
fi
GRAPH_ARG=()  # GRAPHS=1: the mse and rrdb runs with --cuda-graphs (falls back to eager if the probe fails)
[ "${GRAPHS:-0}" = 1 ] && [ "$PLAN" != gan ] && [ "$DEVICE" != cpu ] && GRAPH_ARG=(--cuda-graphs)
COMPILE_ARG=()
[ "${COMPILE:-0}" = 1 ] && COMPILE_ARG=(--compile)

if [ "$DEVICE" != cpu ]; then
  step tests_cuda 90 python3 -m pytest -q -p no:cacheprovider tests/test_core.py tests/test_train.py tests/test_api.py -k "cuda"
fi
if [ "${BENCH:-1}" = 0 ]; then
  echo "- speed tables: skipped (BENCH=0)" >>"$SUMMARY"
else
  step upscale_speed 70 python3 benchmarks/upscale_speed.py --device "$DEVICE" --sizes "$SIZES" --tiles "$TILES" "${COMPILE_ARG[@]}"
  step upscale_speed_rrdb 50 python3 benchmarks/upscale_speed.py --device "$DEVICE" --model random-rrdb --sizes "$SIZES" --tiles 0 --repeats 2
fi
if [ "${BENCH:-1}" != 0 ] && [ -d .gpu/train ]; then
  GAN=(--skip-gan)
  [ -f .gpu/vgg19.safetensors ] && GAN=(--vgg-weights .gpu/vgg19.safetensors)
  step train_speed 90 python3 benchmarks/train_speed.py --device "$DEVICE" --data .gpu/train "${TRAIN_ARGS[@]}" "${GAN[@]}" "${COMPILE_ARG[@]}"
else
  echo "- train_speed: skipped (BENCH=0 or no .gpu/train)" >>"$SUMMARY"
fi
if [ "${EXTRA:-0}" = 1 ]; then
  step png_encode 40 python3 benchmarks/png_encode.py --size "$PNG" --threads 1,4,8 --repeats 1
  step large_image 60 python3 benchmarks/large_image.py --device "$DEVICE" --size "$BIG"
fi

if [ -d .gpu/train ]; then
  VAL=()
  [ -d .gpu/bench/set5 ] && VAL=(--val set5 --data-dir .gpu/bench)
  RUN="$OUT/run_$PLAN"
  # 1. A probe with an open-ended schedule; SIGINT at its limit saves a checkpoint.
  probe() {  # probe NAME
    step "$1" "$PROBE" python3 -m srgan_cli train "${START[@]}" \
      --data .gpu/train --out "$RUN" --steps 1000000 --lr-decay cosine --device "$DEVICE" \
      --precision bf16 --channels-last "${RUN_ARGS[@]}" "${VAL[@]}" "${GRAPH_ARG[@]}"
  }
  probe train_probe
  if [ ${#GRAPH_ARG[@]} -gt 0 ] && [ ! -f "$RUN/checkpoint.pt" ]; then
    echo "- train: no checkpoint with --cuda-graphs; the probe again without them" >>"$SUMMARY"
    GRAPH_ARG=()
    rm -rf "$RUN"
    probe train_probe_eager
  fi
  # 2. The steps that fit in what is left, at the speed of the probe's second half (30 s are
  #    kept for the restart and the last validation and save).
  LEFT=$((BUDGET - SECONDS))
  STEPS=$(python3 - "$RUN/metrics.jsonl" "$LEFT" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
left = float(sys.argv[2])
half = rows[len(rows) // 2 :]
rate = (half[-1]["step"] - half[0]["step"]) / max(half[-1]["time"] - half[0]["time"], 1e-3)
print(half[-1]["step"] + max(int(rate * (left - 30) * 0.95), 1))
PY
  )
  echo "- train: probe speed sized --steps ${STEPS:-?} for $LEFT s left" >>"$SUMMARY"
  # 3. The same run to the end of its (now fixed) cosine schedule; SIGINT if it overruns.
  step train_mse $((LEFT - 5)) python3 -m srgan_cli train --resume --out "$RUN" --steps "${STEPS:-1}" \
    --precision bf16 --channels-last "${RUN_ARGS[@]}" "${GRAPH_ARG[@]}"
  tail -n 3 "$RUN/metrics.jsonl" >>"$SUMMARY"
  rm -f "$RUN/checkpoint.pt" "$RUN/generator_best.safetensors"  # too large to bring back / Set5 stays a test set
  # A file comes back only under 16 MiB: a larger generator (RRDB) comes back in fp16, in
  # parts (cat generator.safetensors.part* > generator.safetensors).
  if [ -f "$RUN/generator.safetensors" ] && [ "$(stat -c %s "$RUN/generator.safetensors")" -gt 16000000 ]; then
    python3 benchmarks/half_weights.py "$RUN/generator.safetensors" >>"$SUMMARY" 2>&1
    split -b 15M -d "$RUN/generator.safetensors" "$RUN/generator.safetensors.part" && rm "$RUN/generator.safetensors"
  fi
else
  echo "- train_mse: skipped (no .gpu/train)" >>"$SUMMARY"
fi
cat "$SUMMARY"
