#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on a GPU machine with no network whose python3 (3.12, x86_64) has
# torch, transformers, accelerate, tokenizers, safetensors, pyarrow, pandas, pyyaml, rich, matplotlib and
# pytest but not the rest of what the checks import. Run where PyPI answers:
#   bash benchmarks/gpu_wheels.sh [DIR]      (default: .whl in the checkout; .gitignore keeps it out of git)
# Versions are the ones the project's venv runs (pyproject.toml); --no-deps, so this list is the whole closure
# beyond that machine's packages: trl -> datasets -> dill, multiprocess; pydantic -> pydantic-core,
# annotated-types, typing-inspection, typing-extensions (pydantic wants a newer one than such images carry).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.whl}
py=${PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || py=python3
mkdir -p "$dest"
"$py" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" \
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
du -sh "$dest"
