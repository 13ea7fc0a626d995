"""Named logins for the workbench servers: Jupyter server's identity provider, a French login page, and how
the login reaches the app.

`python -m workbench.serve` starts Voilà with `VigieIdentityProvider` (--Voila.identity_provider_class). A person
logs in with a login made by `vigie users add` (runner/register/users.py) whose role is the server's own;
failures are counted, locked after too many and audited there. The session is a signed cookie that holds
the login and when it opened; it ends after `session_hours` (a shift, 12 h by default), or sooner when the
user is disabled, changes password or role. The server's token still works, for machine access and for
whoever started the server: such a page has no login, and its apps ask for a name as before.

How the app learns who is logged in: Voilà starts one kernel per page load, from the request that the
identity provider has just authenticated. Its prelaunch hook (`prelaunch_hook`, which the provider installs
in Voilà's configuration: a command line cannot name a function) puts a first cell in that
page's copy of the notebook that sets $VIGIE_LOGIN (and $VIGIE_USER) and $VIGIE_SESSION_END_UTC in the
kernel, before any of the app's cells run. The browser cannot change them: Voilà's kernels accept no code
from the page (only widget messages). The apps read them with `runner.core.access.login_from_env`, which
refuses once the session has ended (an open page outlives its cookie).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from traitlets import Float, default

from runner.core.access import LOGIN_VARIABLE, SESSION_END_VARIABLE, Role, role_from_env
from runner.core.errors import VigieError
from runner.register import Register
from runner.register.users import LoginOutcome
from workbench._setup_paths import register_path
from workbench.serve import DEFAULT_SESSION_HOURS

log = logging.getLogger(__name__)
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)

# The login page's words. French first (the agents' language), English with VIGIE_LANG=en.
TEXTS = {
    "fr": {
        "title": "Vigie — connexion",
        "heading": "Connexion à Vigie",
        "role": "Poste : {role}",
        "login": "Identifiant",
        "password": "Mot de passe",
        "submit": "Se connecter",
        "help": "Pas de compte ou mot de passe oublié ? Demandez à l'administrateur de Vigie (vigie users).",
        "wrong": "Identifiant ou mot de passe incorrect.",
        "locked": "Trop d'essais : connexion bloquée jusqu'à {until} (UTC). L'essai a été consigné.",
        "disabled": "Ce compte est désactivé.",
        "role_refused": "Ce compte n'a pas le rôle de ce poste ({role}).",
        "unavailable": "Connexion impossible : le registre ne répond pas. Réessayez ou prévenez l'administrateur.",
        "logged_out": "Vous êtes déconnecté.",
        "expired": "Votre session a pris fin : reconnectez-vous.",
        "roles": {"operator": "opérateur", "analyst": "analyste", "design": "conception", "dpo": "DPD"},
    },
    "en": {
        "title": "Vigie — log in",
        "heading": "Log in to Vigie",
        "role": "Station: {role}",
        "login": "Login",
        "password": "Password",
        "submit": "Log in",
        "help": "No account, or a forgotten password? Ask Vigie's administrator (vigie users).",
        "wrong": "Wrong login or password.",
        "locked": "Too many attempts: logging in is blocked until {until} (UTC). The attempt was recorded.",
        "disabled": "This account is disabled.",
        "role_refused": "This account does not have this station's role ({role}).",
        "unavailable": "Cannot log in: the register does not answer. Try again or tell the administrator.",
        "logged_out": "You are logged out.",
        "expired": "Your session has ended: log in again.",
        "roles": {},
    },
}
# The HTTP status of each refusal: 401 for credentials, 429 while locked, 403 for an account refused as such.
REFUSAL_STATUS = {"wrong": 401, "locked": 429, "disabled": 403, "role": 403, "unavailable": 503}


def texts() -> dict[str, Any]:
    """The login page's words in the interface language ($VIGIE_LANG: fr, the default, or en).

    Returns:
        The words, by key.
    """
    return TEXTS["en"] if os.environ.get("VIGIE_LANG", "").strip().lower().startswith("en") else TEXTS["fr"]


def role_label(role: Role | None) -> str:
    """The server's role as the login page names it.

    Args:
        role: the server's role, or None.

    Returns:
        The role's name in the page's language ("-" without a role).
    """
    if role is None:
        return "-"
    return str(texts()["roles"].get(role.value, role.value))


def refusal_message(outcome: LoginOutcome) -> str:
    """What the login page says to a refused attempt: no word on whether the login exists.

    Args:
        outcome: the refused attempt.

    Returns:
        One sentence.
    """
    words = texts()
    if outcome.refusal == "locked":
        until = outcome.locked_until.strftime("%H:%M") if outcome.locked_until else "?"
        return str(words["locked"]).format(until=until)
    if outcome.refusal == "role":
        return str(words["role_refused"]).format(role=role_label(role_from_env()))
    return str(words.get({"disabled": "disabled", "unavailable": "unavailable"}.get(outcome.refusal, "wrong")))


@dataclass
class VigieUser(User):
    """A session: a named login, or the token's anonymous user (empty login)."""

    login: str = ""
    since_utc: str = ""  # when the session opened (ISO 8601, UTC)


class VigieIdentityProvider(IdentityProvider):
    """Named logins of the server's role (the register's users), the token for machines, sessions of a shift."""

    session_hours = Float(
        DEFAULT_SESSION_HOURS,
        config=True,
        help="How long a session lasts, in hours (a shift); the login page asks again after it.",
    )

    def __init__(self, **kwargs: Any):
        """The provider Voilà creates (once its configuration is read), which installs `prelaunch_hook` there.

        Args:
            **kwargs: Voilà's (parent, log, token, login_handler_class; the last is replaced by Vigie's page).

        Raises:
            ValueError: Voilà's preheated kernels are configured: they start before any login is known.
        """
        super().__init__(**kwargs)
        configuration = getattr(self.parent, "voila_configuration", None)
        if configuration is not None:
            if configuration.preheat_kernel:
                raise ValueError("named logins need a kernel per page: turn VoilaConfiguration.preheat_kernel off")
            configuration.prelaunch_hook = prelaunch_hook

    def get_handlers(self) -> list[tuple[str, object]]:
        """The login and logout pages (Vigie's own, whatever class Voilà passes as login_handler_class).

        Returns:
            (path, handler class) pairs.
        """
        return [(r"/login", VigieLoginHandler), (r"/logout", VigieLogoutHandler)]

    def session_length(self) -> timedelta:
        """How long a session lasts.

        Returns:
            `session_hours` as a duration.
        """
        return timedelta(hours=self.session_hours)

    def authenticate(self, login: str, password: str) -> LoginOutcome:
        """Check a login for this server's role in the register (counted, locked and audited there).

        Args:
            login: the login as typed.
            password: the password as typed.

        Returns:
            The outcome; refusal "role" when the server has no role, "unavailable" when the register fails.
        """
        role = role_from_env()
        if role is None:
            return LoginOutcome(None, "role")
        try:
            with Register(register_path(), create=False) as register:
                return register.users.authenticate(login, password, role)
        except VigieError as exc:
            log.error("login refused: %s", exc)
            return LoginOutcome(None, "unavailable")

    def user_for_login(self, login: str) -> VigieUser:
        """The session of a login just accepted, opening now.

        Args:
            login: the accepted login.

        Returns:
            The session's user.
        """
        return VigieUser(login, name=login, display_name=login, login=login, since_utc=_now_iso())

    def generate_anonymous_user(self, handler: web.RequestHandler) -> VigieUser:
        """The user of a page opened with the token: no login (its apps ask for a name, as before).

        Args:
            handler: the request's handler.

        Returns:
            An anonymous session, opening now.
        """
        username = uuid.uuid4().hex
        return VigieUser(username, name="token", display_name="token", since_utc=_now_iso())

    def user_to_cookie(self, user: User) -> str:
        """The cookie's content (tornado signs it with the server's secret).

        Args:
            user: the session's user.

        Returns:
            JSON: username, login (empty for the token) and when the session opened.
        """
        return json.dumps(
            {
                "username": user.username,
                "login": getattr(user, "login", ""),
                "since_utc": getattr(user, "since_utc", "") or _now_iso(),
            }
        )

    def user_from_cookie(self, cookie_value: str) -> VigieUser | None:
        """The session a cookie holds, while it stands (see `session_stands`).

        Args:
            cookie_value: the cookie's signed content, already checked by tornado.

        Returns:
            The user, or None when the session has ended (the login page then asks again).
        """
        data = json.loads(cookie_value)
        user = VigieUser(
            data["username"],
            name=data["login"] or "token",
            display_name=data["login"] or "token",
            login=data["login"],
            since_utc=data["since_utc"],
        )
        return user if self.session_stands(user) else None

    def session_stands(self, user: VigieUser) -> bool:
        """Whether a session may go on: not past its length, and for a login, the user still enabled in
        the server's role with the password and account they logged in with.

        Args:
            user: the session's user.

        Returns:
            True when it may go on.
        """
        since = datetime.fromisoformat(user.since_utc)
        if datetime.now(UTC) >= since + self.session_length():
            return False
        if not user.login:
            return True
        role = role_from_env()
        try:
            with Register(register_path(), read_only=True) as register:
                return role is not None and register.users.session_valid(user.login, role, since)
        except VigieError as exc:
            log.error("session of %s refused: %s", user.login, exc)
            return False

    def session_end(self, user: VigieUser) -> datetime:
        """When a session ends at the latest.

        Args:
            user: the session's user.

        Returns:
            Its opening plus the session's length.
        """
        return datetime.fromisoformat(user.since_utc) + self.session_length()

    @default("cookie_options")
    def _cookie_options_default(self) -> dict[str, Any]:
        """The browser drops the cookie at the session's end; other sites' pages do not send it."""
        return {"expires_days": self.session_hours / 24, "samesite": "Lax"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class VigieLoginHandler(LoginFormHandler):
    """Vigie's login page: a login and a password, in French, nothing fetched from elsewhere."""

    def _render(self, message: str | None = None, login: str = "") -> None:
        words = texts()
        self.set_header("Cache-Control", "no-store")
        self.write(
            _TEMPLATES.get_template("login.html").render(
                words=words,
                lang="en" if words is TEXTS["en"] else "fr",
                role=str(words["role"]).format(role=role_label(role_from_env())),
                message=message,
                login=login,
                next=self.get_argument("next", default=self.base_url),
                action=self.base_url.rstrip("/") + "/login",
                xsrf=self.xsrf_form_html(),
            )
        )

    @allow_unauthenticated
    def get(self) -> None:
        """The login form, or straight on when the session stands."""
        if self.current_user:
            self._redirect_safe(self.get_argument("next", default=self.base_url))
            return
        words = texts()
        notice = {"logged_out": words["logged_out"], "expired": words["expired"]}.get(self.get_argument("why", ""))
        self._render(message=notice)

    @allow_unauthenticated
    async def post(self) -> None:
        """Check the login (argon2 runs in a thread: other pages keep being served), then go on or say why not."""
        provider = self.identity_provider
        assert isinstance(provider, VigieIdentityProvider)
        login = self.get_argument("login", default="")
        outcome = await asyncio.to_thread(provider.authenticate, login, self.get_argument("password", default=""))
        if outcome.login is None:
            self.set_status(REFUSAL_STATUS.get(outcome.refusal, 401))
            self._render(message=refusal_message(outcome), login=login[:64])
            return
        user = provider.user_for_login(outcome.login)
        self.current_user = user
        provider.set_login_cookie(self, user)
        self.log.info("login %s (%s)", outcome.login, role_from_env())
        self._redirect_safe(self.get_argument("next", default=self.base_url))


class VigieLogoutHandler(JupyterHandler):
    """Log out: the cookie is cleared and the login page says so."""

    @allow_unauthenticated
    def get(self) -> None:
        """Clear the session's cookie and show the login page."""
        self.identity_provider.clear_login_cookie(self)
        self.redirect(self.base_url.rstrip("/") + "/login?why=logged_out")


def prelaunch_hook(req_handler: web.RequestHandler, notebook: nbformat.NotebookNode, cwd: str) -> None:
    """Voilà's hook, run for each page load before its kernel starts: a named login's page gets a first cell
    that tells the kernel who is logged in and when the session ends (see the module's docstring).

    Args:
        req_handler: the page's request handler, already authenticated.
        notebook: this page's own copy of the notebook (modified in place).
        cwd: the kernel's working folder (unused).
    """
    user = req_handler.current_user
    if not isinstance(user, VigieUser) or not user.login:
        return  # the token's page: the kernel inherits the server's environment, which holds no login
    provider = req_handler.settings["identity_provider"]
    values = {
        LOGIN_VARIABLE: user.login,
        "VIGIE_USER": user.login,
        SESSION_END_VARIABLE: provider.session_end(user).isoformat(timespec="seconds"),
    }
    source = "import os as _vigie_os\n" + "".join(
        f"_vigie_os.environ[{name!r}] = {value!r}\n" for name, value in values.items()
    )
    notebook.cells.insert(0, nbformat.v4.new_code_cell(source + "del _vigie_os\n"))
