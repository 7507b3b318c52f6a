#!/usr/bin/env bash
# The GPU checks in one bounded run, for a machine that is lent for a short time: the CUDA
# tests, the speed tables of benchmarks/README.md, then a real training run that gets every
# second left of BUDGET (default 560 s). Every step has its own time limit, so one slow step
# cannot eat the others. The training run first trains for PROBE seconds, then sizes --steps
# from the speed it measured so that its cosine schedule ends inside the budget, and resumes.
# Everything comes back in at most three files (the device tool returns eight, 16 MiB each):
# the steps' output in $OUT/log.txt, one line per step in $OUT/summary.md, and the training
# runs' config.json, metrics.jsonl and generator.safetensors in $OUT/runs.tar (run_STAGE/ per
# stage; over 15 MiB, as RRDB's generators make it, in 15 MiB parts: cat runs.tar.part* | tar -x;
# a generator over 16 MB in fp16).
#
#   python benchmarks/gpu_pack.py --plan mse         # here: fill .gpu/ (data, within 64 MiB)
#   bash benchmarks/gpu_check.sh                     # on the GPU machine, from the repo root
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh  # the same plumbing on a CPU, tiny sizes
#
# Data (not in the repository; benchmarks/gpu_pack.py copies it into the ignored folder .gpu/):
#   .gpu/train/      training images, e.g. all of ../shared/data/train (48 MiB)
#   .gpu/bench/set5/ Set5 (HR and LR_x4) for the validation of the training runs (1 MiB)
#   .gpu/lpips.safetensors     optional: LPIPS weights, logged as val_lpips by the runs
#   .gpu/vgg19.safetensors     the VGG19 features for the GAN stages and the gan rows of
#                    train_speed (38 MiB; then only about 12 MB of training images fit: the
#                    checkout is 13 MiB of the 64 MiB a call sends)
# Missing data skips the steps that need it, with a line in the summary.
# Environment: BUDGET, PROBE (seconds); PLAN: mse (default: srresnet_x4 at 96 px, batch 64),
# gan (the SRGAN stage from srresnet_x4; needs .gpu/vgg19.safetensors, so a smaller train/),
# rrdb (ESRGAN's RRDB of RRDB_BLOCKS blocks, default 23, PSNR stage from scratch) or esrgan
# (that PSNR stage, then ESRGAN's GAN stage from it, in one call: the first gets SPLIT, default
# 0.5, of the time left after the checks); TRAIN_<stage> (mse, gan, rrdb, esrgan_gan; TRAIN for
# a one-stage plan) replaces a stage's `srgan train` options; GRAPHS=1 trains the mse stages
# with --cuda-graphs (eager again if its probe saves nothing); BENCH=0 skips the speed tables,
# EXTRA=1 adds the PNG and large-image rows, COMPILE=1 the torch.compile rows.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET=${BUDGET:-560}
PROBE=${PROBE:-60}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# LPIPS weights sent by `gpu_pack.py --lpips FILE`: the runs' validation logs LPIPS too
[ -f .gpu/lpips.safetensors ] && export SRGAN_LPIPS_WEIGHTS=.gpu/lpips.safetensors
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
RRDB_SIZE=(--num-blocks "${RRDB_BLOCKS:-23}")
[ "$QUICK" = 1 ] && RRDB_SIZE=(--num-blocks 1 --num-features 8)
case "$PLAN" in
  mse|gan|rrdb) STAGES=("$PLAN") ;;
  esrgan) STAGES=(rrdb esrgan_gan) ;;  # both ESRGAN stages in one call: RRDB's weights need not travel
  *) echo "PLAN must be mse, gan, rrdb or esrgan" >&2; exit 2 ;;
esac
# The runs live in a new folder under runs/ (a relative path, so the generators' metadata names
# no folder of the machine) and go to $OUT in one tar at the end.
mkdir -p runs
RUNS=$(mktemp -d runs/gpu_check.XXXXXX)
stage_args() {  # stage_args STAGE: sets START (how the run starts), INIT and RUN_ARGS
  local vgg=(--vgg-weights .gpu/vgg19.safetensors) default
  case "$1" in
    mse)  INIT=weights/srresnet_x4.safetensors; START=(--stage mse --init "$INIT")
          default="--batch-size 64 --patch-size 96 --lr 2e-4 --ema 0.999" ;;
    gan)  INIT=weights/srresnet_x4.safetensors; START=(--stage gan --init "$INIT" "${vgg[@]}")
          default="--batch-size 16 --patch-size 96 --lr 1e-4 --ema 0.995 --pixel-loss l1 --pixel-weight 0.2 --grid-weight 1 --flat-weight 50 --block-weight 10 --local-grid-weight 10 --spectral-weight 20 --ldl-weight 100" ;;
    rrdb) INIT=; START=(--stage mse --arch rrdb "${RRDB_SIZE[@]}")
          default="--batch-size 16 --patch-size 128 --lr 2e-4 --ema 0.999" ;;
    esrgan_gan)  # ESRGAN's GAN stage: relativistic, pre-activation conv5_4 compared by L1, L1 pixel term
          # (ESRGAN's weights were set against torchvision's VGG19; these Caffe features keep SRGAN's 1/12.75)
          INIT=$RUNS/run_rrdb/generator.safetensors; START=(--stage gan --init "$INIT" "${vgg[@]}")
          default="--batch-size 16 --patch-size 128 --lr 1e-4 --ema 0.999 --gan-type relativistic --content-loss conv5_4 --content-criterion l1 --pixel-loss l1 --pixel-weight 1e-2 --adv-weight 2.5e-3" ;;
  esac
  # TRAIN_<stage> replaces the stage's options; so does TRAIN, for a one-stage plan.
  local own="TRAIN_$1" one=
  [ ${#STAGES[@]} = 1 ] && one=${TRAIN:-}
  default=${!own:-${one:-$default}}
  if [ "$QUICK" = 1 ]; then
    read -r -a RUN_ARGS <<<"$default --batch-size 2 --patch-size 48 --val-every 5 --checkpoint-every 5 --workers 0"
  else
    read -r -a RUN_ARGS <<<"$default --workers 12 --val-every 1000 --checkpoint-every 2000"
  fi
}
if [ "$QUICK" = 1 ]; then
  SIZES=32,48; TILES=0,32; BIG=800x600; PNG=1000x800
  TRAIN_ARGS=(--batch-size 2 --patch-size 48 --steps 3 --warmup 1 --loader-batches 2 --workers 0)
else
  SIZES=256,512; TILES=0,256; BIG=4000x3000; PNG=8000x6000
  TRAIN_ARGS=(--batch-size 16 --patch-size 96 --steps 20 --workers 8)
fi
GRAPHS=${GRAPHS:-0}  # 1: the mse-stage runs with --cuda-graphs (eager again if the probe fails)
[ "$DEVICE" = cpu ] && GRAPHS=0
COMPILE_ARG=()
[ "${COMPILE:-0}" = 1 ] && COMPILE_ARG=(--compile)

if [ "$DEVICE" != cpu ]; then
  step tests_cuda 90 python3 -m pytest -q -p no:cacheprovider tests/test_core.py tests/test_train.py tests/test_api.py tests/test_perceptual.py -k "cuda"
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

train_stage() {  # train_stage STAGE END: train until about second END of this script
  local name=$1 end=$2
  stage_args "$name"
  local run="$RUNS/run_$name" graph=()
  [ "$GRAPHS" = 1 ] && [ "${START[1]}" = mse ] && graph=(--cuda-graphs)
  if [ -n "$INIT" ] && [ ! -f "$INIT" ]; then
    echo "- $name: skipped (no $INIT)" >>"$SUMMARY"
    return
  fi
  if [[ " ${START[*]} " == *" .gpu/vgg19.safetensors "* ]] && [ ! -f .gpu/vgg19.safetensors ]; then
    echo "- $name: skipped (no .gpu/vgg19.safetensors)" >>"$SUMMARY"
    return
  fi
  # 1. A probe with an open-ended schedule; SIGINT at its limit saves a checkpoint.
  probe() {  # probe STEP-NAME
    step "$1" "$PROBE" python3 -m srgan_cli train "${START[@]}" \
      --data .gpu/train --out "$run" --steps 1000000 --lr-decay cosine --device "$DEVICE" \
      --precision bf16 --channels-last "${RUN_ARGS[@]}" "${VAL[@]}" "${graph[@]}"
  }
  probe "${name}_probe"
  if [ ${#graph[@]} -gt 0 ] && [ ! -f "$run/checkpoint.pt" ]; then
    echo "- $name: no checkpoint with --cuda-graphs; the probe again without them" >>"$SUMMARY"
    graph=()
    rm -rf "$run"
    probe "${name}_probe_eager"
  fi
  # 2. The steps that fit before END, at the speed of the probe's second half (30 s are kept
  #    for the restart and the last validation and save).
  local left=$((end - SECONDS)) steps
  steps=$(python3 - "$run/metrics.jsonl" "$left" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
left = float(sys.argv[2])
half = rows[len(rows) // 2 :]
rate = (half[-1]["step"] - half[0]["step"]) / max(half[-1]["time"] - half[0]["time"], 1e-3)
print(half[-1]["step"] + max(int(rate * (left - 30) * 0.95), 1))
PY
  )
  echo "- $name: probe speed sized --steps ${steps:-?} for $left s left" >>"$SUMMARY"
  # 3. The same run to the end of its (now fixed) cosine schedule; SIGINT if it overruns. With
  #    no time left, none: timeout takes 0 as no limit at all, and refuses a negative one.
  if [ $((left - 5)) -gt 0 ]; then
    step "$name" $((left - 5)) python3 -m srgan_cli train --resume --out "$run" --steps "${steps:-1}" \
      --precision bf16 --channels-last "${RUN_ARGS[@]}" "${graph[@]}"
  else
    echo "- $name: skipped (the budget is spent: $left s left after the probe)" >>"$SUMMARY"
  fi
  tail -n 3 "$run/metrics.jsonl" >>"$SUMMARY"
}

if [ -d .gpu/train ]; then
  VAL=()
  [ -d .gpu/bench/set5 ] && VAL=(--val set5 --data-dir .gpu/bench)
  n=${#STAGES[@]}
  for i in "${!STAGES[@]}"; do
    # Each stage ends at its share of what is left (SPLIT: the first stage's share of two).
    if [ "$i" -lt $((n - 1)) ]; then
      end=$(python3 -c "print(int($SECONDS + ($BUDGET - $SECONDS) * ${SPLIT:-0.5}))")
    else
      end=$BUDGET
    fi
    train_stage "${STAGES[$i]}" "$end"
  done
  # What comes back: each run's config, metrics and generator (not its checkpoint, too large;
  # nor generator_best, which Set5 chose: Set5 stays a test set), in one tar file under 15 MiB
  # or in 15 MiB parts (cat runs.tar.part* | tar -x). A generator over 16 MB (RRDB's) is
  # stored in fp16.
  rm -f "$RUNS"/run_*/checkpoint.pt "$RUNS"/run_*/generator_best.safetensors
  for g in "$RUNS"/run_*/generator.safetensors; do
    if [ -f "$g" ] && [ "$(stat -c %s "$g")" -gt 16000000 ]; then
      python3 benchmarks/half_weights.py "$g" >>"$SUMMARY" 2>&1
    fi
  done
  if compgen -G "$RUNS/run_*" >/dev/null; then
    tar -cf "$OUT/runs.tar" -C "$RUNS" $(cd "$RUNS" && echo run_*)
    if [ "$(stat -c %s "$OUT/runs.tar")" -gt 15728640 ]; then
      split -b 15M -d "$OUT/runs.tar" "$OUT/runs.tar.part" && rm "$OUT/runs.tar"
    fi
    echo "- results: $(cd "$OUT" && echo runs.tar*)" >>"$SUMMARY"
  fi
  rm -rf "$RUNS"
else
  echo "- training: skipped (no .gpu/train)" >>"$SUMMARY"
fi
cat "$SUMMARY"
