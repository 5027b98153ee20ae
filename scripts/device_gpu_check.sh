#!/usr/bin/env bash
# GPU checks and timings for the machine that the `device` tool lends some sessions: an NVIDIA H200
# with PyTorch (python3 3.12) and no network. Runs tests/test_gpu.py and scripts/bench_gpu.py and
# leaves their output in $OUT.
#
# Prepare here, from the repo root (this machine reaches the package registries; the device does
# not): the three wheels that machine lacks, about 2.4 MB, in an ignored folder.
#
#   grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl open_clip_torch==3.3.0 ftfy wcwidth
#
# Then one device call, carry [".whl"], timeout_s 480:   bash scripts/device_gpu_check.sh
#
# faiss-gpu (for bench_gpu.py's faiss and IVF-training figures) is not among them: its wheels are
# far larger than what a call may carry, so those figures report "skipped" there.
set -uo pipefail
OUT=${OUT:-/tmp/vadindex-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "install of .whl/*.whl failed (prepared and carried?)"; exit 2; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.txt"
tests=${PIPESTATUS[0]}
timeout 300 python3 scripts/bench_gpu.py --seconds 8 2>&1 | tee "$OUT/bench_gpu.txt"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, bench exit $bench" | tee -a "$OUT/gpu.txt"
exit $((tests || bench))
