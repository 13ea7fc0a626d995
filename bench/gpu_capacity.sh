#!/usr/bin/env bash
# How many 17-camera sites one GPU carries: the site benchmark (bench/site.py: the Cannes-like site live, then
# the same cameras as fast as the node goes) with VIGIE_DEVICE=cuda:0, the runner's own code path.
#
#   bench/gpu_capacity.sh [LIVE_S] [CAPACITY_S]        (defaults: a 60 s live run, a 60 s capacity run)
#
# Needs, on the GPU machine: this repository with its .venv (torch with CUDA: the lock's torch wheel is a
# CUDA build), and the evaluation clips at $VIGIE_SHARED_DATA (default ../shared/data). No internet: the
# models are those the site names (the COCO INT8 OpenVINO export stays on the CPU's OpenVINO; the .pt models,
# pose and flame, run on the GPU through Ultralytics in half precision). Takes 4-6 minutes; prints the site
# report, then `sites_per_gpu: N` (and the site's own last lines). VIGIE_DEVICE=cpu dry-runs it on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
LIVE_S="${1:-60}"
CAPACITY_S="${2:-60}"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR="$PWD/var/ultralytics"
export VIGIE_SHARED_DATA="${VIGIE_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
export VIGIE_DEVICE="${VIGIE_DEVICE:-cuda:0}"
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    echo "gpu_capacity: $PWD/.venv not found (copy the repository with its .venv)" >&2
    exit 2
fi
if [ ! -d "$VIGIE_SHARED_DATA/clips" ]; then
    echo "gpu_capacity: clips not found under $VIGIE_SHARED_DATA/clips (set VIGIE_SHARED_DATA)" >&2
    exit 2
fi
case "$VIGIE_DEVICE" in
    cuda*)
        "$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None); sys.exit(0 if torch.cuda.is_available() else 3)" \
            || { echo "gpu_capacity: torch sees no CUDA device (VIGIE_DEVICE=$VIGIE_DEVICE)" >&2; exit 3; }
        nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>/dev/null || true ;;
esac
# The runner's capture threads and rules use the CPU cores; report them with the figure.
echo "cpu cores: $(nproc)  live: ${LIVE_S}s  capacity: ${CAPACITY_S}s  device: $VIGIE_DEVICE"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
timeout 560 "$PY" bench/site.py --device "$VIGIE_DEVICE" --duration-s "$LIVE_S" --site-capacity-s "$CAPACITY_S" \
    --no-ratio --no-capacity | tee "$report"
sites=$(sed -n 's/^sites_per_node: \([0-9]*\).*/\1/p' "$report")
echo "sites_per_gpu: ${sites:-n/a}"
