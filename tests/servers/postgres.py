"""A throwaway PostgreSQL server for the tests: `initdb` into a temp folder, `pg_ctl` on a free loopback port.

    with TempPostgres() as server:                       # trust authentication on 127.0.0.1
        url = server.create_database()                   # postgresql://vigie@127.0.0.1:PORT/vigie_1
        server.stop(); server.start()                    # a restart, on the same port and data

    with TempPostgres(password="s3cret") as server:      # scram-sha-256: a password is required
        server.url("vigie_1", with_password=True)

Debian's server binaries (/usr/lib/postgresql/<version>/bin, `apt-get install postgresql`; `make test` does it)
are required: the calling test is skipped when they are absent. initdb refuses to run as root: as root, the
server runs as `nobody` (its folder is handed over to that user), otherwise as the current user.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers.mosquitto import free_port

PG_BIN_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "vigie"
START_TIMEOUT_S = 30.0
_UNPRIVILEGED = "nobody"


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server's bin folder, or None when none is installed.

    Returns:
        The folder holding initdb, pg_ctl and postgres, or None.
    """
    found = sorted(
        (p for p in PG_BIN_ROOT.glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


class TempPostgres:
    """A PostgreSQL server on 127.0.0.1 in a temp folder, deleted when the `with` block ends."""

    def __init__(self, password: str | None = None):
        """A server, not started yet (the `with` block runs initdb and starts it).

        Args:
            password: the superuser's password (scram-sha-256 on TCP); None: trust authentication.
        """
        bin_dir = postgres_bin()
        if bin_dir is None:
            pytest.skip(f"no PostgreSQL server under {PG_BIN_ROOT} (apt-get install postgresql; `make test` does it)")
        self.bin_dir = bin_dir
        self.password = password
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="vigie-postgres-"))
        self.data_dir = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        self._as_user = [] if os.geteuid() != 0 else ["runuser", "-u", _UNPRIVILEGED, "--"]
        self._databases = itertools.count(1)
        self._initialised = False

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_user, *command], capture_output=True, text=True, check=False)

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, _UNPRIVILEGED)
        self.folder.chmod(0o700)
        arguments = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8"]
        arguments += ["--no-sync", "--locale=C"]
        if self.password is None:
            arguments += ["--auth=trust"]
        else:
            password_file = self.folder / "pwfile"
            password_file.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(password_file, _UNPRIVILEGED)
            arguments += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={password_file}"]
        done = self._run(*arguments)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {(done.stderr or done.stdout).strip()[-500:]}")
        self._initialised = True

    def start(self) -> None:
        """Start the server (initdb first, once) and wait until it accepts connections."""
        if not self._initialised:
            self._initdb()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder} "
            "-c fsync=off -c max_connections=200"
        )
        done = self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w",
            "-t", str(int(START_TIMEOUT_S)), "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-800:] if self.log_path.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {(done.stderr or done.stdout).strip()[-300:]} {log}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server.

        Args:
            mode: pg_ctl's shutdown mode: "fast" (clients disconnected) or "immediate" (as a crash).
        """
        if self.data_dir.joinpath("postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres", *, with_password: bool = False) -> str:
        """A libpq URL of one database of this server.

        Args:
            database: the database's name.
            with_password: put the password in the URL (else libpq finds it in PGPASSWORD or ~/.pgpass).

        Returns:
            postgresql://vigie[:password]@127.0.0.1:PORT/database
        """
        secret = f":{self.password}" if with_password and self.password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database.

        Returns:
            Its URL (without the password).
        """
        import psycopg

        name = f"vigie_{next(self._databases)}"
        with psycopg.connect(self.url(with_password=True), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> TempPostgres:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
