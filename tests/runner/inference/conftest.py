"""Fixtures of the inference tests: tiny untrained YOLO11n weights and their OpenVINO export, built once per
session (the export takes tens of seconds; every test reads it, none writes it)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from runner.config.site import ModelSpec
from runner.inference.export_cache import choose_runtime
from runner.inference.modelref import resolve_weights
from tests.runner.inference.tiny_model import IMGSZ


@pytest.fixture(scope="session")
def tiny_pt(tmp_path_factory) -> Path:
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    model = YOLO("yolo11n.yaml")  # untrained: no download, 80 classes named "0".."79"
    # Untrained features are ~0, so class scores are sigmoid(bias): class "0" everywhere on the stride-8
    # grid (0.88), class "1" on the stride-32 grid (0.95), no other class.
    for level, branch in enumerate(model.model.model[-1].cv3):
        branch[-1].bias.data.fill_(-10.0)
        if level == 0:
            branch[-1].bias.data[0] = 2.0
        if level == 2:
            branch[-1].bias.data[1] = 3.0
    model.save(str(path))
    return path


@pytest.fixture(scope="session")
def built_cache(tiny_pt, tmp_path_factory) -> Path:
    """A cache folder holding the real OpenVINO export of the tiny weights (exported once per session)."""
    root = tmp_path_factory.mktemp("cache")
    connections = []

    def no_network(sock, address):
        connections.append(address)
        raise OSError("network blocked by the test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIGIE_CACHE_DIR", str(root))
        patch.setattr(socket.socket, "connect", no_network)  # the export needs nothing from the network
        spec = ModelSpec(weights=str(tiny_pt), imgsz=IMGSZ)
        runtime = choose_runtime("tiny", spec, resolve_weights("tiny", spec))
    assert runtime.backend == "openvino" and runtime.path.parent == root
    assert connections == []
    return root
