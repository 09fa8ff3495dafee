#!/usr/bin/env bash
# GPU check of full-precision outputs (after benchmarks/gpu.sh found bf16 in them): with trainer=gpu at its
# default bf16-mixed, DTL2's cached features must equal the CPU ones (up to fp32/TF32 rounding) and predict on a
# GPU-trained DTL1 run must reproduce its predictions.csv. Same .gpu layout as gpu.sh.
#   bash .gpu/code/benchmarks/gpu_precision.sh            # device machine, repo root; log under $OUT
set -u -o pipefail
G=$PWD/.gpu
cd "$G/code" || exit 2
OUT=${OUT:?set OUT}
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 HYDRA_FULL_ERROR=1
GPU=${GPU:-gpu}   # GPU=cpu: a dry run of this script on a machine without one
if [ "$GPU" = gpu ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$G"/whl/*.whl || { echo "FATAL: the carried wheels did not install"; exit 3; }
fi
export PYTHONPATH=/tmp/site:$G/code
W=/tmp/gpuprec && rm -rf "$W" && mkdir -p "$W/logs"
python3 "$G/code/benchmarks/gpu_crops.py" trees "$G/data" "$W/trees" || { echo "FATAL: trees"; exit 5; }
TR="python3 $G/code/train.py"
FOLDER="data=folder data.name=london data.root=$W/trees/sex data.subjects_csv=$W/trees/sex_subjects.csv
  data.task=sex data.identity_grouping=off preprocess=none data.n_folds=5 data.fold=0 logger=none"
dtl2() {  # name, trainer
  FACEDIAG_CACHE_DIR=$W/cache_$1 $TR $FOLDER method=efficientnet_lite0_imagenet_dtl2 trainer=$2 \
    hydra.run.dir="$W/$1" >"$W/logs/$1.log" 2>&1; echo "dtl2 $1: exit $?"
}
dtl2 cpu cpu & A=$!
dtl2 gpu "$GPU" & B=$!
FACEDIAG_CACHE_DIR=$W/cache_dtl1 $TR $FOLDER method=efficientnet_lite0_imagenet_dtl1_cpu trainer="$GPU" \
  ${DTL1_EXTRA:-strategy.max_epochs=4} hydra.run.dir="$W/dtl1" >"$W/logs/dtl1.log" 2>&1; echo "dtl1 gpu: exit $?"
wait $A $B
grep -h "precision\|bf16" "$W/logs/dtl1.log" | head -3
echo "--- DTL2 features, trainer=gpu (bf16-mixed) vs trainer=cpu:"
python3 "$G/code/benchmarks/gpu.py" features "$W/cpu" "$W/gpu"
python3 -m facediag.predict "$W/trees/sex" run="$W/dtl1" out="$W/predict.csv" >"$W/logs/predict.log" 2>&1 \
  || { echo "predict failed"; tail -n 20 "$W/logs/predict.log"; }
echo "--- predict (fp32, CPU scoring) vs the bf16-mixed-trained DTL1 run's predictions.csv:"
python3 "$G/code/benchmarks/gpu.py" predict "$W/dtl1" "$W/predict.csv"
tail -n 3 "$W/logs/dtl1.log"
