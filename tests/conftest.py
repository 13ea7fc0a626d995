"""Test configuration: Ultralytics offline with a private settings folder; shared data discovery."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "ultralytics"))

SHARED_DATA = Path(os.environ.get("VIGIE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $VIGIE_SHARED_DATA); tests that need it skip cleanly when it is absent."""
    if not (SHARED_DATA / "clips").is_dir():
        pytest.skip(f"evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (tests/servers/postgres.py); skips when it is absent."""
    from tests.servers.postgres import TempPostgres

    with TempPostgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database of the session's PostgreSQL server, for one test."""
    return postgres_server.create_database()
