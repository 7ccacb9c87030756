#!/usr/bin/env bash
# The GPU path in one short window: every CUDA check and timing of medseg, each step under its own time limit.
#
#   scripts/gpu_check.sh                      # on a machine with one H100/H200: <= 8 minutes (--budget 470)
#   scripts/gpu_check.sh --device cpu --tiny  # the CPU dry run: tiny shapes, same steps, same outputs
#
# Steps (a failure or a timeout is recorded and the script goes on to the next):
#   pytest_gpu      pytest -m gpu on the test files that hold gpu tests (JUnit XML)
#   loss_float32    medseg bench loss --device cuda: MC eager and compiled vs F.cross_entropy, float32 logits
#   loss_bfloat16   the same with bfloat16 logits (what a network under autocast hands to the loss)
#   infer           medseg bench infer --device cuda: medseg vs MONAI plain and best on a 512x512x200 CT volume,
#                   AMP (bf16) rows, stitching in host memory rows, TFLOP/s against the device's dense peak
#   train_<bundle>  medseg bench train: two epochs of each bundle's own recipe (AMP on CUDA) on synthetic data
#   train_<bundle>_ddp  the bundle's multi_gpu_train.json under torchrun --nproc_per_node=1 (NCCL on CUDA)
#   study           medseg study covid19_binary_gpu, only with --data DIR (the real slices do not travel by
#                   themselves) and only with the time left (or alone: --steps study --budget 560)
# Then `medseg bench gpu-summary` reads every step's result and writes gpu.json and gpu.md.
#
# OUT (--out, else $OUT, else ./gpu_out) receives four files: gpu.json, gpu.md, steps.jsonl (one line per step:
# status, exit code, wall and limit seconds) and raw.tar.gz (every step's JSON, log and the JUnit XML). The data,
# runs and raw results are made in --work (default: a new temporary folder).
#
# Python: --python, else $PYTHON, else .venv/bin/python when present, else python3. medseg runs from this checkout
# (PYTHONPATH), so it needs no install; the packages it needs and the machine lacks come from --wheels DIR
# (installed with pip --no-index into WORK/site; see docs/results/gpu.md).
set -u -o pipefail

START=$SECONDS
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVICE=cuda
TINY=0
DATA=""
OUT_DIR=${OUT:-}
WORK=""
BUDGET=""
STEPS=""
WHEELS=""
PY=${PYTHON:-}

usage() {
    sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --device cuda|cuda:N|cpu   where the steps run (default: cuda)
  --tiny                     tiny shapes and few repeats (the CPU dry run; a minute or a few)
  --out DIR                  the results (default: $OUT, else ./gpu_out); must be new or empty
  --work DIR                 data, runs and raw results (default: a new temporary folder)
  --budget SECONDS           total time from the start to the last step (default: 470, which leaves the
                             summary inside 8 minutes; 1200 with --tiny); each step's limit is cut to what is
                             left, and a step with less than 15 s left is skipped
  --steps A,B,...            only these steps (names above; train_* and *_ddp match every bundle)
  --data DIR                 the COVID-19 slice folder (imgs/, gt_binary/) for the study step
  --wheels DIR               install these wheels (pip --no-index --no-deps) before the steps
  --python PY                the Python to use
  -h, --help                 this help
EOF
}

die() {
    echo "gpu_check.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --device) DEVICE=${2:?--device needs a value}; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --out) OUT_DIR=${2:?--out needs a folder}; shift 2 ;;
    --work) WORK=${2:?--work needs a folder}; shift 2 ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift 2 ;;
    --steps) STEPS=${2:?--steps needs a list}; shift 2 ;;
    --data) DATA=${2:?--data needs a folder}; shift 2 ;;
    --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
    --python) PY=${2:?--python needs a path}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

case $DEVICE in
cpu | cuda | cuda:[0-9]*) ;;
*) die "--device must be cpu, cuda or cuda:N, got '$DEVICE'" ;;
esac
[ -n "$BUDGET" ] || BUDGET=$([ $TINY = 1 ] && echo 1200 || echo 470)
case $BUDGET in '' | *[!0-9]*) die "--budget must be whole seconds, got '$BUDGET'" ;; esac
OUT_DIR=${OUT_DIR:-$ROOT/gpu_out}
if [ -e "$OUT_DIR" ] && [ -n "$(ls -A "$OUT_DIR" 2>/dev/null)" ]; then
    die "--out $OUT_DIR is not empty; give a new folder (nothing there is replaced)"
fi
if [ -n "$DATA" ] && [ ! -d "$DATA/imgs" ]; then
    die "--data $DATA has no imgs/ folder; give the COVID-19 slice folder (imgs/, gt_binary/)"
fi
if [ -n "$WHEELS" ] && ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    die "--wheels $WHEELS holds no .whl file"
fi
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || die "no Python at '$PY' (give --python)"
mkdir -p "$OUT_DIR" || die "cannot make --out $OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
if [ -z "$WORK" ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
elif [ -e "$WORK" ] && [ -n "$(ls -A "$WORK" 2>/dev/null)" ]; then
    die "--work $WORK is not empty; give a new folder"
fi
mkdir -p "$WORK/results" || die "cannot make --work $WORK"
WORK=$(cd "$WORK" && pwd)
RES=$WORK/results
COMMAND="scripts/gpu_check.sh --device $DEVICE$([ $TINY = 1 ] && echo ' --tiny') --budget $BUDGET${STEPS:+ --steps $STEPS}${DATA:+ --data $DATA}"

export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor MPLBACKEND=Agg
[ "$DEVICE" = cpu ] && export CUDA_VISIBLE_DEVICES=""
MEDSEG=("$PY" -m medseg)
cd "$ROOT" || exit 2

echo "gpu_check: device $DEVICE$([ $TINY = 1 ] && echo ' (tiny)'), budget ${BUDGET}s, python $PY, out $OUT_DIR, work $WORK"
if [ -n "$WHEELS" ]; then
    echo "gpu_check: installing the wheels of $WHEELS into $WORK/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$WHEELS"/*.whl \
        >"$RES/wheels.log" 2>&1 || die "installing the wheels failed (see $RES/wheels.log)"
    export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH#"$ROOT"}"
fi
"$PY" -c "import torch, monai, medseg" >"$RES/imports.log" 2>&1 ||
    die "$PY cannot import torch, monai and medseg: $(tail -n 1 "$RES/imports.log") (give --wheels, see docs/results/gpu.md)"
if [ "$DEVICE" != cpu ]; then
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" ||
        die "--device $DEVICE: CUDA is not available to $PY here (use --device cpu --tiny for the dry run)"
fi

# --- the step runner --------------------------------------------------------------------------------------------
wanted() { # a step is run when --steps is empty or names it (train_* and *_ddp globs allowed)
    [ -z "$STEPS" ] && return 0
    local s
    for s in ${STEPS//,/ }; do
        # shellcheck disable=SC2053
        [[ $1 == $s ]] && return 0
    done
    return 1
}
record() { # record NAME STATUS RC WALL LIMIT NOTE
    local note=${6//\\/\/}
    note=${note//\"/\'}
    printf '{"step": "%s", "status": "%s", "rc": %s, "wall_s": %s, "limit_s": %s, "note": "%s"}\n' \
        "$1" "$2" "$3" "$4" "$5" "$note" >>"$RES/steps.jsonl"
    printf 'gpu_check: %-32s %-8s %6ss (limit %ss) %s\n' "$1" "$2" "$4" "$5" "$6"
}
step() { # step NAME LIMIT STDOUT_FILE NOTE -- COMMAND...  (STDOUT_FILE "-": stdout goes to the log)
    local name=$1 limit=$2 stdout=$3 note=$4
    shift 5
    wanted "$name" || return 0
    local left=$((BUDGET - (SECONDS - START)))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 15 ]; then
        record "$name" skipped null 0 "$limit" "no time left in the ${BUDGET}s budget"
        return 0
    fi
    local t0 rc status ms
    t0=$(date +%s%N)
    if [ "$stdout" = - ]; then
        timeout --kill-after=10 "$limit" "$@" >"$RES/$name.log" 2>&1
    else
        timeout --kill-after=10 "$limit" "$@" >"$RES/$stdout" 2>"$RES/$name.log"
    fi
    rc=$?
    case $rc in 0) status=ok ;; 124 | 137) status=timeout ;; *) status=failed ;; esac
    if [ $rc != 0 ]; then
        note="${note:+$note; }$(grep -v '^\s*$' "$RES/$name.log" | tail -n 1 | cut -c1-200)"
        [ "$stdout" != - ] && [ ! -s "$RES/$stdout" ] && rm -f "$RES/$stdout"
    fi
    ms=$((($(date +%s%N) - t0) / 1000000))
    record "$name" "$status" "$rc" "$((ms / 1000)).$((ms % 1000 / 100))" "$limit" "$note"
}

# --- the steps --------------------------------------------------------------------------------------------------
if [ $TINY = 1 ]; then
    LOSS_ARGS=(--shape 2 3 32 32 --repeats 3 --warmup 1)
    INFER_ARGS=(--network coplenet_small --shape 64 64 4 --roi 32 32 --sw-batch-size 4 --repeats 1)
    TRAIN_ARGS=(--epochs 2 --cases 8 --size 32)
    DDP_ARGS=("${TRAIN_ARGS[@]}")
    L_TEST=180 L_LOSS=120 L_INFER=150 L_TRAIN=240 L_DDP=240
else
    # the shapes of the CPU loss benchmark (docs/results/loss_benchmark.md); a CT volume at the published width
    LOSS_ARGS=(--shape 8 5 256 256 --repeats 20 --warmup 3)
    INFER_ARGS=(--network coplenet --shape 512 512 200 --roi 256 256 --sw-batch-size 16 --repeats 3)
    TRAIN_ARGS=(--epochs 2 --cases 160 --size 256)
    DDP_ARGS=(--epochs 2 --cases 40 --size 128) # a check that NCCL trains, not a throughput
    L_TEST=60 L_LOSS=60 L_INFER=140 L_TRAIN=55 L_DDP=40
fi
LOSS_EXTRA=()
INFER_EXTRA=()
if [ "$DEVICE" = cpu ]; then
    LOSS_EXTRA=(--no-compiled --threads 1) # a CPU compile takes minutes on a busy machine
    LOSS_NOTE="dry run: eager MC only"
else
    INFER_EXTRA=(--amp bf16 --stitch-cpu)
    LOSS_NOTE=""
fi

# test files that hold gpu tests (collecting only these keeps the step short and free of unrelated imports)
mapfile -t GPU_TESTS < <(grep -rl --include='test_*.py' 'mark.gpu' tests | sort)
step pytest_gpu "$L_TEST" - "${#GPU_TESTS[@]} files" -- \
    "$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$RES/pytest_gpu.xml" "${GPU_TESTS[@]}"
for dtype in float32 bfloat16; do
    step "loss_$dtype" "$L_LOSS" "loss_$dtype.json" "$LOSS_NOTE" -- \
        "${MEDSEG[@]}" bench loss --device "$DEVICE" --dtype "$dtype" --losses mc --no-first-step "${LOSS_ARGS[@]}" \
        "${LOSS_EXTRA[@]}" --json --no-progress
done
step infer "$L_INFER" infer.json "" -- \
    "${MEDSEG[@]}" bench infer --device "$DEVICE" "${INFER_ARGS[@]}" "${INFER_EXTRA[@]}" --json
TRAIN_DEVICE=${DEVICE%%:*}
for bundle in covid19_ct_lesion robotic_instrument; do
    step "train_$bundle" "$L_TRAIN" - "" -- \
        "${MEDSEG[@]}" bench train --bundle "$bundle" --device "$TRAIN_DEVICE" "${TRAIN_ARGS[@]}" \
        --work "$WORK/train_$bundle" --output "$RES/train_$bundle.json"
done
for bundle in covid19_ct_lesion; do # one bundle: both share the same multi_gpu_train.json overlay
    step "train_${bundle}_ddp" "$L_DDP" - "torchrun --nproc_per_node=1" -- \
        "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m medseg bench train --multi-gpu \
        --bundle "$bundle" --device "$TRAIN_DEVICE" "${DDP_ARGS[@]}" --work "$WORK/train_${bundle}_ddp" \
        --output "$RES/train_${bundle}_ddp.json"
done
if wanted study; then
    if [ -z "$DATA" ]; then
        record study skipped null 0 0 "needs the real COVID-19 slices: --data DIR (they do not travel by themselves)"
    elif [ "$DEVICE" = cpu ]; then
        record study skipped null 0 0 "the GPU-sized study takes days on a CPU"
    else
        "$PY" -c "import json, sys; from medseg.resources import experiment_config as e; c = json.load(open(e('covid19_binary_gpu'))); c['data']['source'] = sys.argv[1]; json.dump(c, open(sys.argv[2], 'w'), indent=1)" \
            "$(cd "$DATA" && pwd)" "$WORK/covid19_binary_gpu.json"
        step study "$BUDGET" - "covid19_binary_gpu on $DATA" -- \
            "${MEDSEG[@]}" study "$WORK/covid19_binary_gpu.json" --device "$DEVICE" --work-dir "$WORK/study" \
            --results-dir "$RES/study_report"
    fi
fi

# --- the summary --------------------------------------------------------------------------------------------------
"${MEDSEG[@]}" bench gpu-summary "$RES" --device "$DEVICE" --invocation "$COMMAND" >"$RES/summary.log" 2>&1 ||
    echo "gpu_check: the summary failed: $(tail -n 1 "$RES/summary.log")" >&2
for f in gpu.json gpu.md steps.jsonl; do
    [ -f "$RES/$f" ] && cp "$RES/$f" "$OUT_DIR/$f"
done
tar -czf "$OUT_DIR/raw.tar.gz" -C "$WORK" results
echo "gpu_check: done in $((SECONDS - START))s: $OUT_DIR/gpu.md, gpu.json, steps.jsonl, raw.tar.gz (work: $WORK)"
[ -f "$OUT_DIR/gpu.json" ]
