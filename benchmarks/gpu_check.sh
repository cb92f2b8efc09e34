#!/usr/bin/env bash
# The GPU check, one command: benchmarks/gpu_check.sh OUTDIR   (docs/benchmarks.md, "The GPU check")
#
# For a machine with one NVIDIA GPU and no network, where python3 already has torch, transformers and
# accelerate: the project's other pure-Python dependencies come as wheels in .whl/ beside the checkout
# (benchmarks/gpu_wheels.sh makes that folder), installed here into a private folder, only if the interpreter
# lacks them. Where the project's .venv exists (a CPU machine), it is used and no wheel is needed. Results as
# JSON in OUTDIR; the checks themselves are benchmarks/gpu_check.py.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$1
mkdir -p "$out"

py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py=$repo/.venv/bin/python; else py=python3; fi
fi

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
needs="import trl, datasets, pydantic, yaml, rich, matplotlib, pytest"
if ! "$py" -c "$needs" 2>/dev/null; then
  shopt -s nullglob
  wheels=("$repo"/.whl/*.whl)
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "gpu_check: $py lacks the project's dependencies ($needs) and $repo/.whl holds no wheels:" >&2
    echo "  run benchmarks/gpu_wheels.sh on a machine with PyPI access and bring .whl/ along" >&2
    exit 2
  fi
  site=${TPT_WHEEL_SITE:-/tmp/tpt-gpu-check-site}
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
  export PYTHONPATH="$repo:$site"
  "$py" -c "$needs"  # fails here, with the import error, if a wheel is still missing
fi

# No network there: the libraries must not try the Hugging Face Hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
cd "$repo"
exec "$py" benchmarks/gpu_check.py "$out"
