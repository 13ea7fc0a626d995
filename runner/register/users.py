"""Named logins of the workbench: users with one role and an argon2-hashed password, and failed logins.

`vigie users add|disable|passwd|list` manage them, each change audited with who made it; the workbench
servers check a login here (workbench/auth.py) and write the login's name with every decision, export
and pause. A user is never deleted, only disabled: their name stays in the audit log and the decisions.

Failed logins are counted per typed name, known or not (so that a refusal says nothing about whether a
login exists): MAX_FAILURES in a row within LOCK_MINUTES lock that name for LOCK_MINUTES, and every
failure is audited.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from runner.core.access import Role, parse_role
from runner.core.errors import UsageError
from runner.register import clock
from runner.register.audit import AuditChain
from runner.register.database import Database

LOGIN_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
MIN_PASSWORD_CHARS = 12  # ANSSI's floor for a password that guards personal data, without a second factor
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this only bounds the work a login form can ask for
MAX_FAILURES = 5
LOCK_MINUTES = 15
PERSON_ROLES = tuple(role for role in Role if role is not Role.RUNNER)  # the runner role is the service's
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, 3 passes)


@dataclass(frozen=True)
class LoginOutcome:
    """What a login attempt gave: the user's login when accepted, else why not (in a word) and until when."""

    login: str | None
    refusal: str = ""  # "", "wrong", "locked", "disabled" or "role"
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether the attempt was accepted.

        Returns:
            True when the password, the account and the role were all right.
        """
        return self.login is not None


def clean_login(login: object) -> str:
    """A login as stored: lower case, 2 to 64 of a-z 0-9 . _ - (starting with a letter or digit).

    Args:
        login: the login as typed.

    Returns:
        The login, trimmed and in lower case.

    Raises:
        UsageError: when it does not have that form.
    """
    text = login.strip().lower() if isinstance(login, str) else ""
    if not LOGIN_PATTERN.fullmatch(text):
        raise UsageError(
            f"login {str(login)[:40]!r}: 2 to 64 characters among a-z 0-9 . _ -, starting with a letter or digit"
        )
    return text


def person_role(role: object) -> Role:
    """The role of a person's login (every role but the service's own).

    Args:
        role: a role's name, or a Role.

    Returns:
        The Role.

    Raises:
        UsageError: an unknown role, or the runner role.
    """
    parsed = parse_role(role)
    if parsed not in PERSON_ROLES:
        raise UsageError(f"role {parsed.value}: the service's role; a login takes {', '.join(PERSON_ROLES)}")
    return parsed


def check_password(password: object) -> str:
    """A new password, refused when too short or too long.

    Args:
        password: the password as typed.

    Returns:
        The password, unchanged (spaces count).

    Raises:
        UsageError: fewer than MIN_PASSWORD_CHARS or more than MAX_PASSWORD_CHARS characters.
    """
    text = password if isinstance(password, str) else ""
    if not MIN_PASSWORD_CHARS <= len(text) <= MAX_PASSWORD_CHARS:
        raise UsageError(f"password: {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return text


@cache
def _unknown_login_hash() -> str:
    """A hash that no typed password matches, verified for unknown logins so that they take as long."""
    return _HASHER.hash("no login has this password: it is only verified to spend the same time")


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class Users:
    """The users table and the failed-login counts, through the register's shared connection."""

    def __init__(self, database: Database, chain: AuditChain):
        """Users through the register's shared connection.

        Args:
            database: the shared connection.
            chain: the audit chain, appended in the same transaction as each change.
        """
        self.database = database
        self.chain = chain

    # -- management (vigie users) ------------------------------------------------------------------------
    def add(self, login: str, role: object, password: str, by: str) -> dict:
        """Create a login.

        Args:
            login: the new login (see `clean_login`).
            role: its role (see `person_role`).
            password: its password (see `check_password`); only its argon2 hash is stored.
            by: who creates it (recorded in the audit row).

        Returns:
            The user's row, without the hash.

        Raises:
            UsageError: a bad login, role or password, or a login that exists already.
        """
        login, role = clean_login(login), person_role(role)
        password_hash = _HASHER.hash(check_password(password))  # slow: outside the write lock
        now = clock.iso(clock.utc_now())
        with self.database.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE login = ?", (login,)).fetchone():
                raise UsageError(f"login {login}: exists already (vigie users passwd changes its password)")
            conn.execute(
                "INSERT INTO users(login, role, password_hash, disabled, created_utc, created_by, changed_utc) "
                "VALUES (?, ?, ?, 0, ?, ?, ?)",
                (login, role.value, password_hash, now, by, now),
            )
            self.chain.append(conn, "user_added", by, None, {"login": login, "role": role.value})
        return self._require(login)

    def disable(self, login: str, by: str) -> dict:
        """Disable a login: it can no longer log in, and its open sessions end at their next request.

        Args:
            login: the login.
            by: who disables it (recorded in the audit row).

        Returns:
            The user's row, without the hash.
        """
        login = self._require(login)["login"]
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE users SET disabled = 1, changed_utc = ? WHERE login = ?", (clock.iso(clock.utc_now()), login)
            )
            self.chain.append(conn, "user_disabled", by, None, {"login": login})
        return self._require(login)

    def set_password(self, login: str, password: str, by: str) -> dict:
        """Replace a login's password; its open sessions end, its failed logins are forgotten.

        Args:
            login: the login.
            password: the new password (see `check_password`).
            by: who changes it (recorded in the audit row).

        Returns:
            The user's row, without the hash.
        """
        login = self._require(login)["login"]
        password_hash = _HASHER.hash(check_password(password))
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ?, changed_utc = ? WHERE login = ?",
                (password_hash, clock.iso(clock.utc_now()), login),
            )
            conn.execute("DELETE FROM login_failures WHERE login = ?", (login,))
            self.chain.append(conn, "user_password_changed", by, None, {"login": login})
        return self._require(login)

    def list(self) -> list[dict]:
        """Every login, enabled or not.

        Returns:
            One row per login (login, role, disabled, created_utc, created_by, changed_utc), by login.
        """
        return [dict(row) for row in self.database.query(f"SELECT {_PUBLIC_COLUMNS} FROM users ORDER BY login")]

    def get(self, login: str) -> dict | None:
        """One login's row, without the hash.

        Args:
            login: the login (any case).

        Returns:
            The row, or None when there is no such login (or the text cannot be one).
        """
        try:
            login = clean_login(login)
        except UsageError:
            return None
        rows = self.database.query(f"SELECT {_PUBLIC_COLUMNS} FROM users WHERE login = ?", (login,))
        return dict(rows[0]) if rows else None

    def _require(self, login: str) -> dict:
        row = self.get(login)
        if row is None:
            raise UsageError(f"login {str(login)[:40]!r}: no such user (vigie users list shows them)")
        return row

    # -- logging in (the workbench servers) --------------------------------------------------------------
    def authenticate(self, login: str, password: str, role: object) -> LoginOutcome:
        """Check a login attempt for a server of `role`; count and audit the failures, lock after too many.

        Args:
            login: the login as typed.
            password: the password as typed.
            role: the server's role: a user of another role is refused.

        Returns:
            The outcome: accepted (the login), or refused with its reason ("wrong" for an unknown login or
            a wrong password alike, "locked", "disabled", "role").
        """
        role = parse_role(role)
        key = _failure_key(login)
        now = clock.utc_now()
        locked_until = self._locked_until(key, now)
        if locked_until is not None:
            self._audit_failure(key, "locked", role)
            return LoginOutcome(None, "locked", locked_until)
        rows = self.database.query("SELECT * FROM users WHERE login = ?", (key,))
        user = dict(rows[0]) if rows else None
        password = password if isinstance(password, str) else ""
        matches = len(password) <= MAX_PASSWORD_CHARS and _password_matches(
            user["password_hash"] if user else _unknown_login_hash(), password
        )
        if user is None or not matches:
            return self._count_failure(key, "wrong_password" if user else "unknown_login", role, now)
        if user["disabled"]:
            self._audit_failure(key, "disabled", role)
            return LoginOutcome(None, "disabled")
        if user["role"] != role.value:
            self._audit_failure(key, f"role {user['role']}", role)
            return LoginOutcome(None, "role")
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM login_failures WHERE login = ?", (key,))
            if _HASHER.check_needs_rehash(user["password_hash"]):  # the hasher's parameters were raised
                conn.execute("UPDATE users SET password_hash = ? WHERE login = ?", (_HASHER.hash(password), key))
            self.chain.append(conn, "login", key, None, {"role": role.value})
        return LoginOutcome(key)

    def session_valid(self, login: str, role: object, since: datetime) -> bool:
        """Whether a session opened at `since` still stands: the user exists, is enabled, still has the
        server's role, and neither their password nor their account changed since.

        Args:
            login: the session's login.
            role: the server's role.
            since: when the session was opened (timezone-aware).

        Returns:
            True when the session may go on.
        """
        user = self.get(login)
        return (
            user is not None
            and not user["disabled"]
            and user["role"] == parse_role(role).value
            and datetime.fromisoformat(user["changed_utc"]) <= since
        )

    def _locked_until(self, key: str, now: datetime) -> datetime | None:
        rows = self.database.query("SELECT locked_until_utc FROM login_failures WHERE login = ?", (key,))
        until = datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None
        return until if until is not None and until > now else None

    def _count_failure(self, key: str, reason: str, role: Role, now: datetime) -> LoginOutcome:
        window_start = clock.iso(now - timedelta(minutes=LOCK_MINUTES))
        with self.database.transaction() as conn:
            row = conn.execute(
                "SELECT failures, last_failure_utc FROM login_failures WHERE login = ?", (key,)
            ).fetchone()
            # Failures further apart than the lock's length start a new count: a typo a week is no attack.
            failures = (row[0] if row and row[1] >= window_start else 0) + 1
            locked_until = now + timedelta(minutes=LOCK_MINUTES) if failures >= MAX_FAILURES else None
            conn.execute(
                "INSERT INTO login_failures(login, failures, last_failure_utc, locked_until_utc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (login) DO UPDATE SET failures = excluded.failures, "
                "last_failure_utc = excluded.last_failure_utc, locked_until_utc = excluded.locked_until_utc",
                (key, failures, clock.iso(now), clock.iso(locked_until) if locked_until else None),
            )
            self._append_failure(conn, key, reason, role, failures)
            if locked_until is not None:
                self.chain.append(
                    conn, "login_locked", key, None, {"failures": failures, "until_utc": clock.iso(locked_until)}
                )
        return LoginOutcome(None, "locked" if locked_until else "wrong", locked_until)

    def _audit_failure(self, key: str, reason: str, role: Role) -> None:
        with self.database.transaction() as conn:
            self._append_failure(conn, key, reason, role, None)

    def _append_failure(
        self, conn: sqlite3.Connection, key: str, reason: str, role: Role, failures: int | None
    ) -> None:
        details: dict[str, object] = {"reason": reason, "server_role": role.value}
        if failures is not None:
            details["failures"] = failures
        self.chain.append(conn, "login_failed", key, None, details)


_PUBLIC_COLUMNS = "login, role, disabled, created_utc, created_by, changed_utc"


def _failure_key(login: object) -> str:
    """The name failures are counted under: the login as stored, or the typed text made printable and short."""
    try:
        return clean_login(login)
    except UsageError:
        text = "".join(c if c.isprintable() else "?" for c in str(login).strip().lower())[:64]
        return text or "(empty)"
