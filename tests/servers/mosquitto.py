"""A real Mosquitto broker for the tests: its own config, a free loopback port and a temp folder.

    with TempMosquitto() as broker:          # anonymous clients allowed
        ... broker.port ...
        broker.stop(); broker.start()        # an outage, then the broker back on the same port

    with TempMosquitto(users={"vigie": "s3cret"}) as broker:   # a password file: anonymous clients refused

Skips the calling test when /usr/sbin/mosquitto is absent (`make test` installs it from Debian).
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")
START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now.

    Returns:
        The port number.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TempMosquitto:
    """A Mosquitto broker on 127.0.0.1, started as a subprocess and stopped with SIGTERM."""

    def __init__(self, users: dict[str, str] | None = None):
        """A broker, not started yet (the `with` block starts it).

        Args:
            users: login -> password for a password file; None: anonymous clients allowed.
        """
        if not MOSQUITTO.exists():
            pytest.skip(f"{MOSQUITTO} is absent (apt-get install mosquitto; `make test` does it)")
        self.users = users
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="vigie-mosquitto-"))
        self.log_path = self.folder / "mosquitto.log"
        self.process: subprocess.Popen | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            # Kept across a stop/start: a subscriber's persistent session and its queued QoS 1 messages survive
            # the outage, as with a broker restarted by systemd.
            "persistence true",
            f"persistence_location {self.folder}/",
            f"user {getpass.getuser()}",  # as root, mosquitto would otherwise switch to the `mosquitto` user
            f"log_dest file {self.log_path}",
            "log_type all",
        ]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            if not MOSQUITTO_PASSWD.exists():
                pytest.skip(f"{MOSQUITTO_PASSWD} is absent")
            password_file = self.folder / "passwords"
            password_file.touch(mode=0o600)
            for login, password in self.users.items():
                subprocess.run([str(MOSQUITTO_PASSWD), "-b", str(password_file), login, password], check=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        (self.folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start the broker and wait until it accepts connections (on the same port after a `stop()`)."""
        self.process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited ({self.process.returncode}): {error.strip()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM; SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()

    def __enter__(self) -> TempMosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
