"""Fixtures of the workbench tests: registers with known content, and for the browser tests one Voilà
server per session (started with `python -m workbench.serve`, the command `make workbench` runs)
driven by Debian's chromium through Playwright.

The browser tests skip only when chromium cannot be found (`make test` installs it with apt-get);
the server fixture fails loudly when the server does not come up, with the end of its log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from runner.core.access import Principal
from runner.register import Register
from tests.helpers import alert_record

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("VIGIE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 90
# Where the browser tests save screenshots of the apps (e.g. docs/ to refresh the README's images).
SCREENSHOTS_DIR = os.environ.get("VIGIE_SCREENSHOTS_DIR")


# -- registers with known content ----------------------------------------------------------------
def scene_jpeg(
    seed: int, box: tuple[float, float, float, float] | None = None, size: tuple[int, int] = (480, 270)
) -> bytes:
    """A small synthetic camera view (ground, a path, a lamp post) with the alert's box drawn in red."""
    width, height = size
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 3] = (200, 170, 140)  # sky, BGR
    image[height // 3 :] = (70, 120, 80)  # lawn
    cv2.fillPoly(
        image,
        [np.array([[0, height], [width // 3, height // 3], [width // 2, height // 3], [width, height]])],
        (150, 150, 150),
    )
    cv2.line(image, (int(width * 0.8), height // 3), (int(width * 0.8), int(height * 0.8)), (40, 40, 40), 4)
    image = cv2.add(image, rng.integers(0, 18, image.shape, dtype=np.uint8))
    if box is not None:
        x0, y0, x1, y1 = (int(v * s) for v, s in zip(box, (width, height, width, height), strict=True))
        cv2.rectangle(image, (x0, y0), (x1, y1), (0, 0, 255), 2)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def add_alert(register: Register, *, minutes: float, snapshot: bool = True, **fields) -> int:
    """Store one alert at 2025-05-14 10:00 UTC + minutes, with a synthetic snapshot unless told not to."""
    moment = datetime(2025, 5, 14, 10, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    record = alert_record(ts_utc=moment.isoformat(timespec="milliseconds"), **fields)
    jpeg = scene_jpeg(abs(int(minutes * 10)), record.bbox) if snapshot else None
    return register.add_alert(record, jpeg).id


def fill_console_register(register: Register) -> dict[str, int]:
    """The browser session's register: two real alerts on one subject, one test alert, one decided."""
    return {
        "first": add_alert(register, minutes=0, is_test=False, subject="zone:lawn", bbox=[0.55, 0.45, 0.65, 0.8]),
        "second": add_alert(register, minutes=0.5, is_test=False, subject="zone:lawn", bbox=[0.6, 0.45, 0.7, 0.82]),
        "test": add_alert(
            register,
            minutes=1,
            is_test=True,
            camera_id="cam-02",
            kind="wrong_way",
            rule_id="path-wrong-way",
            subject="track:4",
            bbox=[0.2, 0.4, 0.26, 0.62],
        ),
        "decided": add_alert(
            register,
            minutes=2,
            is_test=False,
            kind="crowd_density",
            rule_id="lawn-density",
            subject="zone:lawn",
            bbox=[0.5, 0.4, 0.9, 0.9],
        ),
    }


@pytest.fixture
def register(tmp_path: Path) -> Iterator[Register]:
    with Register(tmp_path / "var" / "vigie.db") as reg:
        yield reg


@pytest.fixture
def workbench_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every workbench path at a temporary folder (and the apps at French, their default)."""
    (tmp_path / "zones").mkdir()
    monkeypatch.setenv("VIGIE_DB", str(tmp_path / "var" / "vigie.db"))
    monkeypatch.setenv("VIGIE_ZONES_DIR", str(tmp_path / "zones"))
    monkeypatch.setenv("VIGIE_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.delenv("VIGIE_MEDIA_DIR", raising=False)
    monkeypatch.delenv("VIGIE_LANG", raising=False)
    monkeypatch.setenv("VIGIE_ROLE", "operator")  # the role a workbench server hands its apps (serve --role)
    monkeypatch.delenv("VIGIE_USER", raising=False)
    return tmp_path


# -- the Voilà server ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkbenchServer:
    base_url: str
    token: str
    db_path: Path
    ids: dict[str, int]
    log_path: Path

    def url(self, notebook: str, token: bool = True) -> str:
        return f"{self.base_url}/voila/render/{notebook}" + (f"?token={self.token}" if token else "")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"workbench server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/login", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    pytest.fail(f"workbench server not serving after {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (Voilà then shuts its kernels down), SIGKILL if it hangs."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def workbench_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkbenchServer]:
    """The operators' server (`--role operator`): console, and the dashboards read only."""
    yield from _serve(tmp_path_factory, "operator")


@pytest.fixture(scope="session")
def design_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkbenchServer]:
    """The design phase's server (`--role design`, its own token): camera setup and tuning."""
    yield from _serve(tmp_path_factory, "design")


def _serve(tmp_path_factory: pytest.TempPathFactory, role: str) -> Iterator[WorkbenchServer]:
    root = tmp_path_factory.mktemp(f"workbench-{role}")
    db_path = root / "var" / "vigie.db"
    with Register(db_path) as reg:
        ids = fill_console_register(reg)
        reg.decide(ids["decided"], "rejected", by=Principal("agent-setup", "operator"), reason="shadow")
    token = secrets.token_urlsafe(24)
    args = ["--role", role, "--user", f"test-{role}"]
    with serving(root, db_path, args, {"VIGIE_TOKEN": token}) as (base_url, log_path):
        yield WorkbenchServer(base_url, token, db_path, ids, log_path)


@contextlib.contextmanager
def serving(root: Path, db_path: Path, args: list[str], extra_env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`python -m workbench.serve ARGS` on a free loopback port, over the register at db_path and the zones,
    exports and Jupyter folders under root, as `make workbench` starts it; stopped (SIGTERM to its process
    group) when the block ends. Yields (base URL, server log path)."""
    (root / "zones").mkdir(exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "VIGIE_DB": str(db_path),
        "VIGIE_ZONES_DIR": str(root / "zones"),
        "VIGIE_EXPORT_DIR": str(root / "exports"),
        "VIGIE_LANG": "fr",
        "JUPYTER_CONFIG_DIR": str(root / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(root / "jupyter-runtime"),
        **extra_env,
    }
    # The role comes from --role, as `make workbench WORKBENCH_ARGS="--role ..."` gives it.
    for name in ("VIGIE_MEDIA_DIR", "VIGIE_ROLE", "VIGIE_LOGIN", "VIGIE_SESSION_HOURS"):
        env.pop(name, None)
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workbench.serve", *args, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(process, base_url, log_path)
        yield base_url, log_path
    finally:
        _stop(process)


# -- the browser --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (make test installs Debian's chromium with apt-get)")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    tab = context.new_page()
    tab.set_default_timeout(60_000)  # a Voilà page waits for its kernel to start and run the notebook
    yield tab
    context.close()


def full_app_screenshot(tab, path: Path, width: int = 1280) -> None:
    """The whole app in one image: Voilà scrolls inside its own container, which full_page does not see,
    so the viewport is first made taller than the app, then cut to the app's bottom."""
    tab.set_viewport_size({"width": width, "height": 4000})
    tab.wait_for_timeout(500)  # re-layout, and images decoded
    bottom = tab.evaluate(
        "() => Math.max(600, ...[...document.querySelectorAll('.jupyter-widgets')]"
        ".map(e => e.getBoundingClientRect().bottom))"
    )
    tab.set_viewport_size({"width": width, "height": int(bottom) + 24})
    tab.screenshot(path=str(path))


@pytest.fixture
def screenshot():
    """screenshot(page, "workbench_console.png"): saved under $VIGIE_SCREENSHOTS_DIR when it is set."""

    def take(tab, name: str) -> None:
        if SCREENSHOTS_DIR:
            Path(SCREENSHOTS_DIR).mkdir(parents=True, exist_ok=True)
            full_app_screenshot(tab, Path(SCREENSHOTS_DIR) / name)

    return take
