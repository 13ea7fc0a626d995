"""Who may do what: principals (a user and the role they act in), roles and their permissions.

The checks live here and are called by the code that writes (`Register.decide`, `set_paused`,
`purge`, the workbench's config and statistics exports), so a hidden button is never the only
barrier. A refusal is a `PermissionDenied` (exit code 3, like the other authorisation errors).

Identity reaches the code from the CLI (`--user`, `--role`, or $VIGIE_USER / $VIGIE_ROLE) and from
the workbench server, which is started for one role (`python -m workbench.serve --role ...`) and
hands that role to its apps through the environment. See docs/threat_model.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from runner.core.errors import AuthorizationError, UsageError

MAX_USER_CHARS = 200


class Role(StrEnum):
    OPERATOR = "operator"  # municipal police operator: decides on alerts, pauses and resumes analysis
    ANALYST = "analyst"  # reads the register, exports statistics; changes nothing
    DESIGN = "design"  # ministry agent in the design phase: edits and exports site configs
    RUNNER = "runner"  # the service itself: writes alerts and audit rows, purges by the retention schedule
    DPO = "dpo"  # data protection officer: answers the rights requests of the persons filmed (vigie rights)


class Action(StrEnum):
    DECIDE = "decide on an alert"
    TAKE = "take or release an alert"
    PAUSE = "pause or resume analysis"
    PURGE = "purge the register"
    EXPORT_STATISTICS = "export statistics"
    EXPORT_CONFIG = "export a site config"
    RIGHTS_ACCESS = "search or export records for a rights request"
    RIGHTS_RESTRICT = "restrict records for a rights request"
    RIGHTS_ERASE = "erase media for a rights request"


# Reading the register (dashboards, `vigie alerts`, `vigie audit`) needs no write permission and is
# limited by who can reach the file or the server, not by a role.
PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.DECIDE: frozenset({Role.OPERATOR}),
    Action.TAKE: frozenset({Role.OPERATOR}),
    Action.PAUSE: frozenset({Role.OPERATOR}),
    Action.PURGE: frozenset({Role.RUNNER}),
    Action.EXPORT_STATISTICS: frozenset({Role.ANALYST}),
    Action.EXPORT_CONFIG: frozenset({Role.DESIGN}),
    Action.RIGHTS_ACCESS: frozenset({Role.DPO}),
    Action.RIGHTS_RESTRICT: frozenset({Role.DPO}),
    Action.RIGHTS_ERASE: frozenset({Role.DPO}),
}


class PermissionDenied(AuthorizationError):
    """A principal tried an action its role does not allow (exit code 3)."""


@dataclass(frozen=True)
class Principal:
    """A user (name or badge number, as they typed it) acting in one role."""

    user: str
    role: Role

    def __post_init__(self) -> None:
        user = clean_user(self.user)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "role", parse_role(self.role))

    def __str__(self) -> str:
        return f"{self.user} ({self.role.value})"

    def audit_details(self) -> dict[str, str]:
        """What every audit row of an attributed action carries besides its actor column.

        Returns:
            {"role": the role's value}.
        """
        return {"role": self.role.value}


def clean_user(user: object) -> str:
    """Trimmed, 1 to MAX_USER_CHARS printable characters (no newline: one audit line per action).

    Args:
        user: the identity as given (a name or badge number); anything but a str counts as empty.

    Returns:
        The identity without surrounding whitespace.

    Raises:
        UsageError: when it is empty, too long or holds a non-printable character.
    """
    text = user.strip() if isinstance(user, str) else ""
    if not text:
        raise UsageError("a user identity is required (name or badge number): every action is attributed")
    if len(text) > MAX_USER_CHARS or not text.isprintable():
        raise UsageError(f"user identity: 1 to {MAX_USER_CHARS} printable characters")
    return text


def parse_role(role: object) -> Role:
    """The Role a user typed or a caller passed.

    Args:
        role: a role's name in any case, surrounding whitespace allowed, or a Role (returned as is).

    Returns:
        The Role.

    Raises:
        UsageError: when it names no role (one line listing the valid ones).
    """
    # A Role passes through Role() as itself; any other non-str raises ValueError there, as an unknown name does.
    value: Any = role.strip().lower() if isinstance(role, str) else role
    try:
        return Role(value)
    except ValueError:
        raise UsageError(f"role {str(role)[:40]!r}: must be one of {', '.join(r.value for r in Role)}") from None


SERVICE = Principal("runner", Role.RUNNER)  # the service's own identity (alerts, its audit rows)
RETENTION_SCHEDULE = Principal("retention", Role.RUNNER)  # the service's scheduled purges


def require(principal: object, action: Action) -> Principal:
    """The principal, when its role allows the action; else PermissionDenied (one line).

    Args:
        principal: who acts; must be a Principal (a bare name raises TypeError: it carries no role).
        action: what they try to do.

    Returns:
        The same principal, for the caller to attribute the action to.

    Raises:
        TypeError: when `principal` is not a Principal.
        PermissionDenied: when its role may not do `action`.
    """
    if not isinstance(principal, Principal):
        # A bare name (the API before roles) carries no role: refuse it rather than guess one.
        raise TypeError(
            f"{action.value}: pass a runner.core.access.Principal(user, role), "
            f"not {type(principal).__name__} (a bare name carries no role)"
        )
    allowed = PERMISSIONS[action]
    if principal.role not in allowed:
        raise PermissionDenied(
            f"{principal.user} (role {principal.role.value}) may not {action.value}: "
            f"only the {' or '.join(sorted(r.value for r in allowed))} role may"
        )
    return principal


def principal_from_env(environ: Mapping[str, str] | None = None, user: str | None = None) -> Principal:
    """The principal the environment names: $VIGIE_ROLE, and `user` or $VIGIE_USER.

    Args:
        environ: the environment to read; None reads os.environ.
        user: the user identity (the CLI's --user); None reads $VIGIE_USER.

    Returns:
        The Principal.

    Raises:
        UsageError: when no role is set, the role is unknown or the user identity is missing or invalid.
    """
    environ = os.environ if environ is None else environ
    role = environ.get("VIGIE_ROLE", "").strip()
    if not role:
        raise UsageError(f"no role given: pass --role or set VIGIE_ROLE ({', '.join(r.value for r in Role)})")
    return Principal(user if user is not None else environ.get("VIGIE_USER", ""), parse_role(role))


def role_from_env(environ: Mapping[str, str] | None = None) -> Role | None:
    """$VIGIE_ROLE as a Role, or None when unset (callers then refuse every write).

    Args:
        environ: the environment to read; None reads os.environ.

    Returns:
        The Role, or None when $VIGIE_ROLE is unset or blank.

    Raises:
        UsageError: when it names no role.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("VIGIE_ROLE", "").strip()
    return parse_role(value) if value else None


# Set by the workbench server in the kernel of a page opened by a named login (workbench/auth.py), never
# typed: the identity of every decision, export and pause made from that page.
LOGIN_VARIABLE = "VIGIE_LOGIN"
SESSION_END_VARIABLE = "VIGIE_SESSION_END_UTC"


def login_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The named login the workbench server authenticated for this page, or None (a page opened with the token).

    Args:
        environ: the environment to read ($VIGIE_LOGIN, $VIGIE_SESSION_END_UTC); None reads os.environ.

    Returns:
        The login, or None when the page was not opened by a named login.

    Raises:
        PermissionDenied: the login's session has ended (an open page outlives its session): log in again.
    """
    environ = os.environ if environ is None else environ
    login = environ.get(LOGIN_VARIABLE, "").strip()
    if not login:
        return None
    session_end = environ.get(SESSION_END_VARIABLE, "").strip()
    if session_end and datetime.now(UTC) >= datetime.fromisoformat(session_end):
        raise PermissionDenied(f"{login}: session ended at {session_end[:16]} UTC; reload the page and log in again")
    return login
