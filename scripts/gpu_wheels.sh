#!/usr/bin/env bash
# Download the wheels that scripts/gpu_check.sh needs on a GPU machine whose Python has PyTorch but not medseg's
# other dependencies (the lent H100/H200 machines: Python 3.12, x86-64, no network), into DIR (default: .whl).
#
#   scripts/gpu_wheels.sh [DIR]        # here, with network access to PyPI; DIR must be new or empty
#
# The list is what the gpu_check steps import and that machine lacks (its package list names torch, numpy,
# scipy, pillow, matplotlib, tqdm, pyyaml, attrs, tensorboard, pytest, hypothesis), at the versions this
# project's virtual environment was tested with. Then carry DIR and run scripts/gpu_check.sh --wheels DIR.
set -u -o pipefail
DIR=${1:-.whl}
PY=${PYTHON:-python3}
WHEELS=(
    monai==1.6.1 pytorch-ignite==0.5.5 nibabel==5.4.2 fire==0.7.1 termcolor==3.3.0
    jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
    pydicom==3.0.2 pylibjpeg==2.1.0 pylibjpeg-openjpeg==2.6.0 isal==1.9.1
)
if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    echo "gpu_wheels.sh: $DIR is not empty; give a new folder" >&2
    exit 2
fi
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d "$DIR" "${WHEELS[@]}" || exit 1
du -sh "$DIR"
