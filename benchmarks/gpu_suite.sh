#!/usr/bin/env bash
# The GPU suite (benchmarks/gpu_suite.py): full fine-tuning of the CT and JSRT configs and the
# VGG16-LSTM on one GPU, every fold, reports under --out (suite.md lists them).
#   benchmarks/gpu_suite.sh --out runs/gpu-suite [--vgg16-weights vgg16.pth] [--jobs 3]
#   benchmarks/gpu_suite.sh --smoke --out /tmp/suite-smoke   # CPU plumbing check, < 1 minute
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/gpu_suite.py" "$@"
