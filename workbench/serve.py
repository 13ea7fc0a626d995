"""Serve the workbench notebooks with Voilà, on the loopback interface and behind a token.

    python -m workbench.serve --role operator|analyst|design [--user NAME] [--ip 127.0.0.1] [--port 8866]
                              [--session-hours 12] [--notebooks notebooks] [--dry-run]

`make workbench` runs this, and so do the browser tests, so what is tested is what is served.
The token is $VIGIE_TOKEN (never printed), or a random one generated here and printed once in the
URLs; it reaches Voilà through the environment (JUPYTER_TOKEN), never through the command line,
where `ps` would show it to every local user. A non-loopback address is refused unless VIGIE_TOKEN is set:
someone chose to open the dashboards to the network and to hand out that token.

One server per role, each with its own token (and port): the role ($VIGIE_ROLE or --role) is
fixed by whoever starts the server and reaches the apps through their kernels' environment, so the
person at the browser cannot choose it; the register and the exports refuse what the role may not
do (runner/core/access.py).

People log in by name at /login (workbench/auth.py): logins made with `vigie users add LOGIN --role ROLE`,
of this server's role only; a session lasts --session-hours (a shift, 12 h); what they decide, export or
pause is recorded under that login, never under a typed name. The token is for machine access and for
whoever started the server: such a page acts as the server's user ($VIGIE_USER or --user, by default the
login that starts it), and the console and setup apps ask it for a name as before.

Paths (VIGIE_DB, VIGIE_ZONES_DIR, VIGIE_MEDIA_DIR, VIGIE_EXPORT_DIR) are made absolute before
Voilà starts, because its kernels run in the notebooks' folder.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import secrets
import sys
from pathlib import Path

from runner.core.access import (
    LOGIN_VARIABLE,
    SESSION_END_VARIABLE,
    Principal,
    Role,
    clean_user,
    principal_from_env,
)
from runner.core.errors import VigieError
from workbench._setup_paths import PROJECT_ROOT, is_database_url

# Jupyter data folder holding Vigie's Voilà template `vigie`: Voilà's lab page without its CDN links.
TEMPLATES_PATH = Path(__file__).resolve().parent / "static"
DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 8866
DEFAULT_SESSION_HOURS = 12.0  # a shift
MIN_TOKEN_CHARS = 16
PATH_VARIABLES = (
    "VIGIE_DB",
    "VIGIE_ZONES_DIR",
    "VIGIE_MEDIA_DIR",
    "VIGIE_EXPORT_DIR",
    "VIGIE_TUNING_DB",
    "VIGIE_CLIPS_DIR",
    "VIGIE_LABELS",
    "VIGIE_SHARED_DATA",
)


SERVED_ROLES = (Role.OPERATOR, Role.ANALYST, Role.DESIGN)  # the runner role is the service's, not a person's
# The apps each role works in (listed first); the others still open, read only: their writes are refused.
ROLE_NOTEBOOKS = {
    Role.OPERATOR: ("03_operator_console.ipynb",),
    Role.ANALYST: ("04_analysis.ipynb", "05_social_acceptability.ipynb"),
    Role.DESIGN: ("01_camera_setup.ipynb", "02_tuning.ipynb"),
}


class ServeError(ValueError):
    """A refusal to serve, with the one line that says why."""


def is_loopback(ip: str) -> bool:
    """Whether `ip` names this machine only.

    Args:
        ip: the address to listen on, or a host name.

    Returns:
        True for "localhost" and loopback addresses (127.0.0.0/8, ::1); False for any other address or host
        name (a name may resolve to anything).
    """
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def choose_token(ip: str, environ: dict[str, str]) -> str:
    """The token the server requires: $VIGIE_TOKEN, else a random one (loopback addresses only).

    Args:
        ip: the address to listen on.
        environ: the environment the server was started in (VIGIE_TOKEN).

    Returns:
        The token.

    Raises:
        ServeError: VIGIE_TOKEN shorter than MIN_TOKEN_CHARS, or a non-loopback address without VIGIE_TOKEN.
    """
    token = environ.get("VIGIE_TOKEN", "").strip()
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ServeError(f"VIGIE_TOKEN is too short: use at least {MIN_TOKEN_CHARS} characters")
    if not is_loopback(ip) and not token:
        raise ServeError(
            f"refusing to serve on {ip} (not a loopback address) without a token: set VIGIE_TOKEN "
            f"(at least {MIN_TOKEN_CHARS} characters) and share it with the authorised users only"
        )
    return token or secrets.token_urlsafe(32)


def choose_principal(role: str | None, user: str | None, environ: dict[str, str]) -> Principal:
    """The role the server is for (--role, else VIGIE_ROLE; required) and its user (--user, VIGIE_USER, login).

    Args:
        role: --role, or None for $VIGIE_ROLE.
        user: --user, or None for $VIGIE_USER, else the login that starts the server.
        environ: the environment the server was started in.

    Returns:
        The principal the server and its apps act as; a ServeError (one line) when the role or user is refused.
    """
    role = (role or environ.get("VIGIE_ROLE", "")).strip()
    if not role:
        raise ServeError(
            f"choose the role this server is for: --role {'|'.join(r.value for r in SERVED_ROLES)} "
            "(or set VIGIE_ROLE); run one server per role, each with its own token"
        )
    try:
        # The user is checked before the role, as it always was: a bad --user is named first.
        user = clean_user((user or environ.get("VIGIE_USER", "")).strip() or getpass.getuser())
        principal = principal_from_env({"VIGIE_ROLE": role}, user=user)
    except VigieError as exc:
        raise ServeError(str(exc)) from None
    if principal.role not in SERVED_ROLES:
        raise ServeError(
            f"--role {principal.role.value}: the service's role is not served to browsers "
            f"(choose {', '.join(r.value for r in SERVED_ROLES)})"
        )
    return principal


def choose_session_hours(hours: float | None, environ: dict[str, str]) -> float:
    """How long a login's session lasts: --session-hours, else $VIGIE_SESSION_HOURS, else a shift (12 h).

    Args:
        hours: --session-hours, or None.
        environ: the environment the server was started in.

    Returns:
        The hours, more than 0 and at most a week.
    """
    text = environ.get("VIGIE_SESSION_HOURS", "").strip()
    try:
        value = hours if hours is not None else float(text.replace(",", ".")) if text else DEFAULT_SESSION_HOURS
    except ValueError:
        raise ServeError(f"VIGIE_SESSION_HOURS={text[:20]!r}: not a number of hours") from None
    if not 0 < value <= 24 * 7:
        raise ServeError(f"session length {value:g} h: must be more than 0 and at most 168 (a week)")
    return value


def server_environment(environ: dict[str, str], token: str, principal: Principal | None = None) -> dict[str, str]:
    """The environment Voilà and its kernels run in.

    Args:
        environ: the environment the server was started in.
        token: the server's token, handed over as JUPYTER_TOKEN.
        principal: the role and user the apps serve (VIGIE_ROLE, VIGIE_USER); None leaves those as they are.

    Returns:
        A copy of `environ` with the PATH_VARIABLES made absolute, JUPYTER_TOKEN set and VIGIE_TOKEN removed.
    """
    env = dict(environ)
    if principal is not None:  # the apps read who they serve from here (runner.core.access.role_from_env)
        env["VIGIE_ROLE"], env["VIGIE_USER"] = principal.role.value, principal.user
    for name in PATH_VARIABLES:
        if env.get(name, "").strip() and not is_database_url(env[name]):  # a postgresql:// VIGIE_DB stays a URL
            env[name] = str(Path(env[name]).expanduser().resolve())
    env["JUPYTER_TOKEN"] = token
    # Voilà finds its templates on the Jupyter path: ours first (voila/templates/vigie).
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(TEMPLATES_PATH), env.get("JUPYTER_PATH", "")) if p)
    env.pop("VIGIE_TOKEN", None)  # the kernels need neither; JUPYTER_TOKEN is read once at start
    for name in (LOGIN_VARIABLE, SESSION_END_VARIABLE):  # only a named login's page gets these (auth.py)
        env.pop(name, None)
    return env


def voila_command(notebooks: Path, ip: str, port: int, session_hours: float = DEFAULT_SESSION_HOURS) -> list[str]:
    """The Voilà command line, with Vigie's named logins (workbench/auth.py); it holds no token, since `ps`
    shows command lines to every local user.

    Args:
        notebooks: the folder of notebooks served.
        ip: the address to listen on.
        port: the port; Voilà does not try another one when it is taken.
        session_hours: how long a named login's session lasts.

    Returns:
        The arguments, this Python interpreter first.
    """
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebooks),
        "--no-browser",
        f"--Voila.ip={ip}",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",  # the printed URL must be the one served
        "--Voila.auto_token=True",  # token from JUPYTER_TOKEN (see server_environment)
        "--VoilaConfiguration.show_tracebacks=False",
        "--VoilaConfiguration.template=vigie",  # no request leaves the machine (workbench/static/voila)
        "--KernelManager.transport=ipc",  # kernels on Unix sockets in a private folder, not on TCP ports
        "--Voila.identity_provider_class=workbench.auth.VigieIdentityProvider",  # logins, and the token
        f"--VigieIdentityProvider.session_hours={session_hours}",
    ]


def app_urls(ip: str, port: int, token: str, notebooks: Path, role: Role | None = None) -> list[str]:
    """The server's URL, then its role's apps first, then the others (read only for this role).

    Args:
        ip: the address listened on (an IPv6 one is put in brackets).
        port: the port.
        token: what the URLs show as the token (the literal "$VIGIE_TOKEN" when the user chose it).
        notebooks: the folder whose *.ipynb files are listed.
        role: the role whose apps come first; None keeps alphabetical order.

    Returns:
        The URLs.
    """
    host = f"[{ip}]" if ":" in ip else ip
    base = f"http://{host}:{port}"
    urls = [f"{base}/?token={token}"]
    names = sorted(p.name for p in notebooks.glob("*.ipynb"))
    own = ROLE_NOTEBOOKS.get(role, ()) if role else ()
    names = [n for n in names if n in own] + [n for n in names if n not in own]
    urls += [f"{base}/voila/render/{name}?token={token}" for name in names]
    return urls


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of `python -m workbench.serve` (see the module's docstring).

    Args:
        argv: the arguments after the program name; None for sys.argv.

    Returns:
        The parsed options (argparse exits with status 2 on a bad one).
    """
    parser = argparse.ArgumentParser(prog="python -m workbench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--role",
        choices=[r.value for r in SERVED_ROLES],
        default=None,
        help="role this server is for (default $VIGIE_ROLE; required): one server per role",
    )
    parser.add_argument("--user", default=None, help="the server's user (default $VIGIE_USER, else your login)")
    parser.add_argument("--ip", default=DEFAULT_IP, help=f"address to listen on (default {DEFAULT_IP})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--session-hours",
        type=float,
        default=None,
        help=f"hours a login's session lasts (default $VIGIE_SESSION_HOURS, else {DEFAULT_SESSION_HOURS:g}: a shift)",
    )
    parser.add_argument("--notebooks", type=Path, default=PROJECT_ROOT / "notebooks", help="folder of notebooks")
    parser.add_argument("--dry-run", action="store_true", help="print the URLs and the command, start nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Check the request, print the URLs, then become Voilà (unless --dry-run).

    Args:
        argv: the arguments after the program name; None for sys.argv.
        environ: the environment to start from; None for os.environ.

    Returns:
        The exit status: 0 after a dry run, 2 for a refusal (one line on stderr). Otherwise Voilà replaces
        this process and nothing returns.
    """
    args = parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    notebooks = args.notebooks.resolve()
    try:
        if not notebooks.is_dir():
            raise ServeError(f"{args.notebooks}: no such folder of notebooks")
        if not 0 < args.port < 65536:
            raise ServeError(f"--port {args.port}: must be between 1 and 65535")
        principal = choose_principal(args.role, args.user, environ)
        token = choose_token(args.ip, environ)
        session_hours = choose_session_hours(args.session_hours, environ)
    except ServeError as exc:
        print(f"workbench.serve: {exc}", file=sys.stderr)
        return 2
    command = voila_command(notebooks, args.ip, args.port, session_hours)
    if not is_loopback(args.ip):
        print(
            "warning: plain HTTP beyond this machine: the token can be read on the network; "
            "put a TLS reverse proxy in front",
            file=sys.stderr,
        )
    # A token chosen in VIGIE_TOKEN is never printed (this output often ends in a service's log): its
    # holders know it. A generated one has no other way to reach the person who started the server.
    shown = "$VIGIE_TOKEN" if environ.get("VIGIE_TOKEN", "").strip() else token
    print(
        f"Vigie workbench (Voilà) for the {principal.role.value} role, user {principal.user} — open:",
        *(f"  {u}" for u in app_urls(args.ip, args.port, shown, notebooks, principal.role)),
        f"named logins ({principal.role.value} role, `vigie users add`; sessions of {session_hours:g} h):",
        f"  {app_urls(args.ip, args.port, shown, notebooks)[0].split('?')[0]}login",
        sep="\n",
        flush=True,
    )
    if args.dry_run:
        print(" ".join(command))
        return 0
    # exec: Voilà becomes this process, so a SIGTERM to it (or to its group) stops it and its kernels cleanly.
    os.execve(sys.executable, command, server_environment(environ, token, principal))
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
