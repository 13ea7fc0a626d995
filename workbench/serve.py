"""Serve the workbench notebooks with Voilà, on the loopback interface and behind a token.

    python -m workbench.serve [--ip 127.0.0.1] [--port 8866] [--notebooks notebooks] [--dry-run]

`make workbench` runs this, and so do the browser tests, so what is tested is what is served.
The token is $VIGIE_TOKEN, or a random one generated here; it reaches Voilà through the
environment (JUPYTER_TOKEN), never through the command line, where `ps` would show it to every
local user. A non-loopback address is refused unless VIGIE_TOKEN is set: someone chose to open
the dashboards to the network and to hand out that token.

Paths (VIGIE_DB, VIGIE_ZONES_DIR, VIGIE_MEDIA_DIR, VIGIE_EXPORT_DIR) are made absolute before
Voilà starts, because its kernels run in the notebooks' folder.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import sys
from pathlib import Path

from workbench._setup_paths import PROJECT_ROOT

DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 8866
MIN_TOKEN_CHARS = 16
PATH_VARIABLES = ("VIGIE_DB", "VIGIE_ZONES_DIR", "VIGIE_MEDIA_DIR", "VIGIE_EXPORT_DIR", "VIGIE_TUNING_DB",
                  "VIGIE_CLIPS_DIR", "VIGIE_LABELS", "VIGIE_SHARED_DATA")


class ServeError(ValueError):
    """A refusal to serve, with the one line that says why."""


def is_loopback(ip: str) -> bool:
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def choose_token(ip: str, environ: dict[str, str]) -> str:
    token = environ.get("VIGIE_TOKEN", "").strip()
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ServeError(f"VIGIE_TOKEN is too short: use at least {MIN_TOKEN_CHARS} characters")
    if not is_loopback(ip) and not token:
        raise ServeError(
            f"refusing to serve on {ip} (not a loopback address) without a token: set VIGIE_TOKEN "
            f"(at least {MIN_TOKEN_CHARS} characters) and share it with the authorised users only"
        )
    return token or secrets.token_urlsafe(32)


def server_environment(environ: dict[str, str], token: str) -> dict[str, str]:
    env = dict(environ)
    for name in PATH_VARIABLES:
        if env.get(name, "").strip():
            env[name] = str(Path(env[name]).expanduser().resolve())
    env["JUPYTER_TOKEN"] = token
    env.pop("VIGIE_TOKEN", None)  # the kernels need neither; JUPYTER_TOKEN is read once at start
    return env


def voila_command(notebooks: Path, ip: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "voila", str(notebooks),
        "--no-browser",
        f"--Voila.ip={ip}",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",  # the printed URL must be the one served
        "--Voila.auto_token=True",  # token from JUPYTER_TOKEN (see server_environment)
        "--VoilaConfiguration.show_tracebacks=False",
        "--KernelManager.transport=ipc",  # kernels on Unix sockets in a private folder, not on TCP ports
    ]


def app_urls(ip: str, port: int, token: str, notebooks: Path) -> list[str]:
    host = f"[{ip}]" if ":" in ip else ip
    base = f"http://{host}:{port}"
    urls = [f"{base}/?token={token}"]
    urls += [f"{base}/voila/render/{p.name}?token={token}" for p in sorted(notebooks.glob("*.ipynb"))]
    return urls


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workbench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ip", default=DEFAULT_IP, help=f"address to listen on (default {DEFAULT_IP})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--notebooks", type=Path, default=PROJECT_ROOT / "notebooks", help="folder of notebooks")
    parser.add_argument("--dry-run", action="store_true", help="print the URLs and the command, start nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    notebooks = args.notebooks.resolve()
    try:
        if not notebooks.is_dir():
            raise ServeError(f"{args.notebooks}: no such folder of notebooks")
        if not 0 < args.port < 65536:
            raise ServeError(f"--port {args.port}: must be between 1 and 65535")
        token = choose_token(args.ip, environ)
    except ServeError as exc:
        print(f"workbench.serve: {exc}", file=sys.stderr)
        return 2
    command = voila_command(notebooks, args.ip, args.port)
    if not is_loopback(args.ip):
        print("warning: plain HTTP beyond this machine: the token can be read on the network; "
              "put a TLS reverse proxy in front", file=sys.stderr)
    print("Vigie workbench (Voilà) — open:", *(f"  {u}" for u in app_urls(args.ip, args.port, token, notebooks)),
          sep="\n", flush=True)
    if args.dry_run:
        print(" ".join(command))
        return 0
    # exec: Voilà becomes this process, so a SIGTERM to it (or to its group) stops it and its kernels cleanly.
    os.execve(sys.executable, command, server_environment(environ, token))
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
