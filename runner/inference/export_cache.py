"""Choose how a model runs, and keep a cache of the OpenVINO models made from the configured weights.

`models.<name>.runtime`:
- `auto` (default): on CPU a PyTorch `.pt` is exported once to an OpenVINO IR with a dynamic input
  (batch, height, width), so frames are letterboxed to their smallest stride-aligned rectangle
  (768x576 at 640 -> 640x480) and run by OpenVINO (on CPUs with AMX it computes in bf16: about 3x
  faster than PyTorch on an idle 2-core machine; `openvino_precision: f32` gives PyTorch's exact
  confidences at about half that speed). A static OpenVINO folder given by the user is reshaped to a
  dynamic input when its graph allows it (YOLO11 exports do not: their attention block was traced with
  constant shapes). When an export or reshape fails the model runs as given, with one log line, and the
  failure is remembered so later starts do not retry. On a GPU (`VIGIE_DEVICE=cuda:0`) a `.pt` stays in
  PyTorch, in half precision: the same code with another device.
- `openvino`: like `auto`, but a failed export of a `.pt` is an error instead of a fallback.
- `torch`: no conversion: a `.pt` runs in PyTorch, any other format as given.

What runs an OpenVINO model (an export from the cache, or a folder given by the user): for YOLO detect
and pose models on the CPU, `runner.inference.ov_engine` (static per-frame-shape compiles, so even a static INT8
folder gets rectangles; parallel requests for the frames of several cameras); anything else, and every
model on a GPU, Ultralytics' predictor. The dynamic reshape below is then only the predictor's fallback.

Threads: one inference uses `$VIGIE_INFER_THREADS` threads (default: every core), in PyTorch and OpenVINO.

Cache: `$VIGIE_CACHE_DIR` or `var/models-cache`, one folder per
`<sha256 of the source weights>-<imgsz>-<export|reshape>-ul<ultralytics>-ov<openvino>_openvino_model`
holding a regular Ultralytics OpenVINO folder plus `vigie-export.json` (sha256 of each file). An entry
is built in a temporary folder then renamed (atomic), the temporary folders a killed build left are
swept before the next build; concurrent starts serialise on a lock file; an
entry whose files no longer match their listing is rebuilt, one that OpenVINO cannot load is dropped
(rebuilt on the next start); a failure leaves `<key>.failed` (delete it to retry). The sha256 pinned in
the config is checked on the source weights before any of this (modelref.resolve_weights). The export
runs offline: it needs only the installed `openvino` (no download, no install).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.config.site import ModelSpec
from runner.core.errors import ModelError
from runner.inference.modelref import ResolvedModel, file_sha256, read_metadata

log = logging.getLogger(__name__)

CACHE_ENV = "VIGIE_CACHE_DIR"
THREADS_ENV = "VIGIE_INFER_THREADS"
MANIFEST = "vigie-export.json"


@dataclass(frozen=True)
class Runtime:
    """What to hand to `ultralytics.YOLO()` and how to call it."""

    path: Path
    backend: str  # pt | openvino | onnx | engine | torchscript: the format actually run
    half: bool  # fp16 inference (CUDA PyTorch only)
    how: str  # one phrase for the log: "cached OpenVINO export", "as given", ...


def cache_dir() -> Path:
    """The export cache's folder.

    Returns:
        `$VIGIE_CACHE_DIR` when set, else `var/models-cache` (relative to the working directory); `~` expanded.
    """
    return Path(os.environ.get(CACHE_ENV) or "var/models-cache").expanduser()


def inference_threads() -> int:
    """Threads for one inference (torch and OpenVINO): `$VIGIE_INFER_THREADS`, default every core.

    Every core is fastest on an idle machine; on 2 cores shared with decoding threads, 1 thread was
    sometimes faster (OpenVINO threads wait on each other when a core is taken): measure with the bench.

    Returns:
        The number of threads, at least 1.

    Raises:
        ModelError: the variable is set to something other than a whole number >= 1.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return max(1, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ModelError(f"{THREADS_ENV} must be a whole number of threads >= 1, got '{value}'")
    return int(value)


def openvino_config(spec: ModelSpec, threads: int) -> dict:
    """Compile options that differ from Ultralytics' (LATENCY hint, every core, the CPU's default precision).

    Args:
        spec: the model's config (its `openvino_precision`).
        threads: threads for one inference (`inference_threads()`).

    Returns:
        OpenVINO compile options; empty when Ultralytics' own are right.
    """
    config: dict = {}
    if threads != (os.cpu_count() or 1):
        config["INFERENCE_NUM_THREADS"] = threads
    if spec.openvino_precision == "f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


def recompile_openvino(model, folder: Path, config: dict) -> bool:
    """Recompile a loaded Ultralytics OpenVINO model (read from `folder`) with extra compile options;
    False when the model is not an OpenVINO one. Later recompiles by Ultralytics keep the options.

    Args:
        model: the loaded `ultralytics.YOLO`, its predictor already built (by a first predict).
        folder: the OpenVINO folder (or .xml file) it was read from.
        config: OpenVINO compile options added to Ultralytics' (`openvino_config`).

    Returns:
        True when recompiled; False when the model does not run on Ultralytics' OpenVINO backend.
    """
    import openvino as ov

    backend = getattr(getattr(getattr(model, "predictor", None), "model", None), "backend", None)
    compile_model = getattr(backend, "compile_model", None)
    if backend is None or not hasattr(backend, "ov_compiled_model") or not isinstance(compile_model, functools.partial):
        return False
    keywords = dict(compile_model.keywords)
    keywords["config"] = {**keywords.get("config", {}), **config}
    backend.compile_model = functools.partial(compile_model.func, *compile_model.args, **keywords)
    xml = folder if folder.is_file() else next(folder.glob("*.xml"))
    backend.ov_compiled_model = backend.compile_model(ov.Core().read_model(str(xml), str(xml.with_suffix(".bin"))))
    return True


def is_gpu(device: str) -> bool:
    """Whether a torch device names a GPU.

    Args:
        device: a torch device ("cpu", "cuda:0", or a bare GPU index such as "0").

    Returns:
        True for a CUDA device.
    """
    return device.startswith("cuda") or device.isdigit()


def versions() -> tuple[str, str]:
    """The installed versions that an export depends on (part of the cache key).

    Returns:
        (Ultralytics version, OpenVINO version without its build suffix).
    """
    import openvino
    import ultralytics

    return ultralytics.__version__, openvino.get_version().split("-")[0]


def cache_key(source_sha256: str, imgsz: int, kind: str = "export") -> str:
    """The name of a cache entry (a folder), and of its lock and failure files.

    Args:
        source_sha256: sha256 of the source weights.
        imgsz: the configured input size.
        kind: "export" (a .pt to OpenVINO) or "reshape" (a static OpenVINO folder made dynamic).

    Returns:
        `<sha256>-<imgsz>-<kind>-ul<ultralytics>-ov<openvino>_openvino_model`.
    """
    ultralytics_version, openvino_version = versions()
    # Ultralytics recognises an OpenVINO folder by this suffix.
    return f"{source_sha256}-{imgsz}-{kind}-ul{ultralytics_version}-ov{openvino_version}_openvino_model"


def choose_runtime(name: str, spec: ModelSpec, resolved: ResolvedModel, device: str = "cpu") -> Runtime:
    """Decide the runtime of a resolved model; exports or reshapes into the cache when needed.

    Args:
        name: the model's config name (for messages).
        spec: its `models.<name>` config (`runtime`, `imgsz`, `task`).
        resolved: its weights, resolved and verified.
        device: the torch device ("cpu", "cuda:0").

    Returns:
        What to load: a .pt on a GPU in fp16, a cached OpenVINO export or reshape, or the weights as given.

    Raises:
        ModelError: `runtime: openvino` and the export of a .pt failed (now or on an earlier start).
    """
    as_given = Runtime(resolved.path, resolved.backend, half=False, how="as given")
    if resolved.backend == "pt":
        if is_gpu(device):
            return Runtime(resolved.path, "pt", half=True, how=f"PyTorch fp16 on {device}")
        if spec.runtime == "torch":
            return Runtime(resolved.path, "pt", half=False, how="PyTorch (runtime: torch)")
        exported = openvino_export(name, spec, resolved)
        if exported is not None:
            return Runtime(exported, "openvino", half=False, how="OpenVINO, cached export with a dynamic input")
        if spec.runtime == "openvino":
            raise ModelError(
                f"model '{name}': models.{name}.runtime is openvino but the OpenVINO export failed "
                f"(see {failure_marker(cache_key(resolved.sha256, spec.imgsz))}); use runtime: auto or torch"
            )
        return Runtime(resolved.path, "pt", half=False, how="PyTorch (OpenVINO export failed before)")
    if resolved.backend == "openvino" and spec.runtime != "torch":
        dynamic = dynamic_openvino(name, spec, resolved)
        if dynamic is not None:
            return Runtime(dynamic, "openvino", half=False, how="OpenVINO, reshaped to a dynamic input (cached)")
    return as_given


# -- cache entries -------------------------------------------------------------------------------------
def failure_marker(key: str) -> Path:
    """Where a failed build of cache entry `key` is remembered.

    Args:
        key: the entry's `cache_key`.

    Returns:
        `<cache_dir>/<key>.failed` (it holds the reason; delete it to retry).
    """
    return cache_dir() / f"{key}.failed"


def listing(folder: Path) -> dict[str, str]:
    """The sha256 of every file below a cache entry, its manifest aside.

    Args:
        folder: a cache entry.

    Returns:
        Relative posix path -> sha256, sorted by path.
    """
    return {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def entry_is_valid(folder: Path) -> bool:
    """True when the folder holds an IR and every file matches the sha256 recorded when it was built.

    Args:
        folder: a cache entry (it may not exist).

    Returns:
        False when the manifest is missing or unreadable, lists no .xml, or differs from the files.
    """
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(recorded) and any(k.endswith(".xml") for k in recorded) and listing(folder) == recorded


@contextlib.contextmanager
def locked(key: str) -> Iterator[None]:
    """Serialise builders of one entry across processes (a second start waits, then reuses).

    Args:
        key: the entry's `cache_key` (the lock file is `<cache_dir>/<key>.lock`, created with the folder).

    Yields:
        Nothing, while the lock is held.
    """
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(name: str, key: str, build: Callable[[Path], Path], what: str) -> Path | None:
    """The cache entry `key`, built by `build(tmp_dir) -> folder` when missing or corrupt; None when the
    build failed now or earlier (remembered in `<key>.failed`).

    Args:
        name: the model's config name (for the log).
        key: the entry's `cache_key`.
        build: called with a fresh temporary folder inside the cache; returns the folder it built there
            (renamed into place). Any exception it raises is a failed build.
        what: one phrase for the log ("OpenVINO export").

    Returns:
        The entry's folder, or None when its build failed.
    """
    entry = cache_dir() / key
    marker = failure_marker(key)
    if entry_is_valid(entry):
        return entry
    with locked(key):
        if entry_is_valid(entry):  # built by a concurrent start while we waited
            return entry
        sweep_leftovers(name, key)
        if marker.exists():
            # Said at warning level when it failed; each later start only notes it (no alarm fatigue).
            log.info(
                "model %s: %s failed on an earlier start (%s); delete %s to retry",
                name,
                what,
                marker.read_text().strip()[:200],
                marker,
            )
            return None
        if entry.exists():
            log.warning("model %s: cache entry %s is corrupt or incomplete: rebuilding it", name, entry)
            shutil.rmtree(entry, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=cache_dir()))
        try:
            folder = build(work)
            files = listing(folder)
            (folder / MANIFEST).write_text(json.dumps({"key": key, "files": files}, indent=1))
            os.rename(folder, entry)
        except Exception as exc:  # export errors come in many types; remember and fall back
            reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            atomic_write(marker, reason + "\n")
            log.warning("model %s: %s failed (%s); running it as given", name, what, reason[:300])
            return None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log.info("model %s: %s cached in %s", name, what, entry)
    return entry


def sweep_leftovers(name: str, key: str) -> list[Path]:
    """Delete the work folders of entry `key` that a killed build left (kill -9, power cut: its `finally` never
    ran). Called with the entry's lock held, so no live build of this entry owns any of them.

    Args:
        name: the model's config name (for the log).
        key: the entry's `cache_key`.

    Returns:
        The folders deleted.
    """
    leftovers = [p for p in cache_dir().glob(f".tmp-{key[:16]}-*") if p.is_dir()]
    for leftover in leftovers:
        log.warning("model %s: removing %s, a partial build left by a crashed start", name, leftover.name)
        shutil.rmtree(leftover, ignore_errors=True)
    return leftovers


def atomic_write(path: Path, text: str) -> None:
    """Write a text file so that a reader sees the old content or the new, never a part.

    Args:
        path: the file to (re)write.
        text: its new content.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def forget(entry: Path) -> None:
    """Drop a cache entry that failed to load (rebuilt on the next start).

    Args:
        entry: the entry's folder; nothing happens when it is already gone.
    """
    shutil.rmtree(entry, ignore_errors=True)


# -- .pt -> dynamic OpenVINO IR --------------------------------------------------------------------------
def openvino_export(name: str, spec: ModelSpec, resolved: ResolvedModel) -> Path | None:
    """The cached OpenVINO export (dynamic input) of a .pt, exported now when missing.

    Args:
        name: the model's config name (for the log).
        spec: its config (`imgsz`, `task`).
        resolved: its .pt weights, resolved and verified.

    Returns:
        The export's folder, or None when the export failed (now or on an earlier start).
    """
    return cached(
        name, cache_key(resolved.sha256, spec.imgsz), lambda work: _export(resolved.path, spec, work), "OpenVINO export"
    )


def _export(source: Path, spec: ModelSpec, work: Path) -> Path:
    from ultralytics import YOLO

    # Ultralytics writes the export beside its input: work on a copy, never inside a wheel or the user's folder.
    copy = work / source.name
    shutil.copyfile(source, copy)
    with quiet_ultralytics():
        model = YOLO(str(copy), task=spec.task) if spec.task else YOLO(str(copy))
        exported = model.export(format="openvino", dynamic=True, imgsz=spec.imgsz, device="cpu", verbose=False)
    folder = Path(exported)
    if not any(folder.glob("*.xml")):
        raise ModelError(f"export produced no OpenVINO model in {folder}")
    return folder


@contextlib.contextmanager
def quiet_ultralytics() -> Iterator[None]:
    """Ultralytics logs warnings and errors only, inside the block (its load and export chatter is noise).

    Yields:
        Nothing; the previous log level comes back on leaving.
    """
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


# -- static OpenVINO folder -> dynamic -------------------------------------------------------------------
def dynamic_openvino(name: str, spec: ModelSpec, resolved: ResolvedModel) -> Path | None:
    """A copy of a static OpenVINO folder with a dynamic input, or None when it already is dynamic or
    its graph cannot be reshaped (e.g. YOLO11 attention blocks traced with constant shapes).

    Args:
        name: the model's config name (for the log).
        spec: its config (`imgsz`, which the reshape is probed at).
        resolved: the OpenVINO folder, resolved and verified.

    Returns:
        The cached dynamic copy's folder, or None (already dynamic, or the reshape failed now or earlier).
    """
    try:
        metadata = read_metadata(resolved.path)
    except ModelError:  # no readable metadata: not known to be dynamic, so the reshape is tried
        metadata = {}
    if metadata.get("args", {}).get("dynamic") or metadata.get("dynamic"):
        return None
    return cached(
        name,
        cache_key(resolved.sha256, spec.imgsz, kind="reshape"),
        lambda work: _reshape(resolved.path, metadata, spec.imgsz, work),
        "reshape to a dynamic input",
    )


def _reshape(folder: Path, metadata: dict, imgsz: int, work: Path) -> Path:
    import numpy as np
    import openvino as ov

    xml = next(folder.glob("*.xml"))
    core = ov.Core()
    model = core.read_model(str(xml), str(xml.with_suffix(".bin")))
    model.reshape([-1, 3, -1, -1])
    # A reshape can pass shape inference yet fail at run time: run one non-square frame before caching.
    probe = np.zeros((1, 3, imgsz * 3 // 4 // 32 * 32 or 32, imgsz), np.float32)
    core.compile_model(model, "CPU")(probe)
    target = work / folder.name
    target.mkdir()
    ov.save_model(model, str(target / xml.name), compress_to_fp16=False)
    args = dict(metadata.get("args") or {})
    args.update(dynamic=True, batch=1)
    (target / "metadata.yaml").write_text(yaml.safe_dump({**metadata, "args": args}, sort_keys=False))
    return target
