#!/usr/bin/env bash
# One prepared run for a machine with a CUDA GPU (about 5 minutes after `make install`):
#   1. the tests marked `gpu` (device placement, AMP vs float32, the batched engine, peak memory);
#   2. `reco bench pipeline --device cuda` (DINOv2 ViT-S/14 and, on CUDA, a random-weight CLIP
#      RN50x16 for language guidance), JSON in benchmarks/results/cuda/pipeline.json.
# Usage: scripts/device_check.sh            (from the repository root; installs .venv if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make install
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
HF_HUB_OFFLINE=1 timeout 240 .venv/bin/python -m pytest -q -m gpu tests/test_cuda.py -s
HF_HUB_OFFLINE=1 timeout 240 .venv/bin/reco bench pipeline --quick --device cuda --out benchmarks/results/cuda
