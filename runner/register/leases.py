"""Runner nodes and their leases: which node analyses which camera of a site, and which runs each site-wide duty.

Several `vigie run --node NAME` processes share one register (PostgreSQL across machines, SQLite on one
machine). Each node heartbeats its row in `nodes`; each camera (and each duty: camera id `duty:<name>`) has
one row in `camera_leases`. Every write below is one write transaction:

- acquire: taken only when the row has no owner or its lease expired (`expires_utc <= now`); the token then
  grows by one, so that each new owner holds a larger token than every owner before it (the fencing token);
- renew: only while the row still names this node *and* this token: after a takeover it fails for good;
- release: the same condition; the row keeps its token (the next owner gets token + 1).

An alert is stored with its node and token only while that lease still stands (`holds`, checked in the
alert's own transaction, see `Records.add_alert`): a node that lost a camera never writes an alert under it.

Time: the database's clock where it has a precise one (PostgreSQL's `CURRENT_TIMESTAMP`, the same for
every node); SQLite's has only whole seconds, but an SQLite register is only ever shared by the processes of
one machine, so their common clock serves. A node never relies on its own clock against the database's:
it stops a camera `ttl - renew` seconds (monotonic) after the start of its last renewal that succeeded,
which is before the lease can expire, whatever the skew.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.core.errors import UsageError, VigieError
from runner.register import clock
from runner.register.audit import AuditChain
from runner.register.database import Database

DUTY_PREFIX = "duty:"  # a camera id with a colon is no valid camera id: duties never collide with cameras
PURGE_DUTY = DUTY_PREFIX + "purge"  # the retention purge of the site's records
OUTBOX_DUTY = DUTY_PREFIX + "outbox"  # the delivery of the site's outbox (runner/outputs)
_FREE_SINCE = "1970-01-01T00:00:00.000+00:00"  # expires_utc of a row created free: expired long ago


class LeaseLost(VigieError):
    """A node's alert refused: the node no longer holds its camera under the lease it analysed it with."""


@dataclass(frozen=True)
class Lease:
    """One node's hold on one camera (or duty) of a site, under one fencing token."""

    site: str
    camera_id: str
    node: str
    token: int
    expires_utc: str


def is_duty(camera_id: str) -> bool:
    """Whether a lease's camera id names a site-wide duty rather than a camera.

    Args:
        camera_id: a lease's camera id.

    Returns:
        True for `duty:<name>`.
    """
    return camera_id.startswith(DUTY_PREFIX)


def database_now(conn: Any) -> datetime:
    """The time every node agrees on, read inside the caller's transaction (see the module's docstring).

    Args:
        conn: the connection a `Database.transaction()` yielded.

    Returns:
        PostgreSQL's transaction time; on SQLite, this machine's clock (`clock.utc_now`).
    """
    return _agreed_time(conn.execute(_NOW_SQL).fetchone()[0])


_NOW_SQL = "SELECT CURRENT_TIMESTAMP"


def _agreed_time(value: object) -> datetime:
    if isinstance(value, datetime):  # PostgreSQL: timestamptz, microseconds
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return clock.utc_now()  # SQLite: a text of whole seconds, of this machine's clock


def _later(moment: datetime, seconds: float) -> str:
    return clock.iso(moment + timedelta(seconds=seconds))


class Leases:
    """Nodes and leases through the register's shared connection; each method is one write transaction."""

    def __init__(self, database: Database, chain: AuditChain):
        """Leases through the register's shared connection.

        Args:
            database: the shared connection.
            chain: the audit chain (each change of owner is audited).
        """
        self.database = database
        self.chain = chain

    # -- nodes ------------------------------------------------------------------------------------------
    def join(
        self,
        name: str,
        site: str,
        capacity: int,
        *,
        pid: int,
        host: str,
        ttl_s: float,
        config: tuple[int, str] | None = None,
    ) -> None:
        """Record a node as running (a restarted node keeps its name and row).

        Args:
            name: the node's name (`--node`).
            site: the site whose cameras it shares.
            capacity: the most cameras it takes (`--max-cameras`).
            pid: its process id.
            host: its host name.
            ttl_s: its leases' ttl: silent for longer, it is dead to the others.
            config: the revision and sha256 of the site config it runs (`vigie status` shows nodes that differ).
        """
        if capacity < 1:
            raise UsageError(f"node {name}: capacity must be at least 1 camera, not {capacity}")
        with self.database.transaction() as conn:
            now = clock.iso(database_now(conn))
            conn.execute(
                "INSERT INTO nodes(name, site, capacity, pid, host, started_utc, heartbeat_utc, lease_ttl_s, "
                "config_revision, config_sha256, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running') "
                "ON CONFLICT (name) DO UPDATE SET site = excluded.site, capacity = excluded.capacity, "
                "pid = excluded.pid, host = excluded.host, started_utc = excluded.started_utc, "
                "heartbeat_utc = excluded.heartbeat_utc, lease_ttl_s = excluded.lease_ttl_s, "
                "config_revision = excluded.config_revision, config_sha256 = excluded.config_sha256, "
                "state = excluded.state",
                (name, site, capacity, pid, host, now, now, ttl_s, *(config or (None, None))),
            )
            self.chain.append(conn, "node_started", name, None, {"site": site, "capacity": capacity, "host": host})

    def heartbeat(self, name: str) -> datetime:
        """The node is alive: its heartbeat is now.

        Args:
            name: the node.

        Returns:
            The database's time of the heartbeat.
        """
        with self.database.transaction() as conn:
            now = database_now(conn)
            conn.execute("UPDATE nodes SET heartbeat_utc = ? WHERE name = ?", (clock.iso(now), name))
        return now

    def leave(self, name: str) -> None:
        """A node stopping cleanly: its leases are released and its state says `stopped`.

        Args:
            name: the node.
        """
        with self.database.transaction() as conn:
            now = clock.iso(database_now(conn))
            conn.execute("UPDATE camera_leases SET node = NULL, expires_utc = ? WHERE node = ?", (now, name))
            conn.execute("UPDATE nodes SET state = 'stopped', heartbeat_utc = ? WHERE name = ?", (now, name))
            self.chain.append(conn, "node_stopped", name, None, {})

    def nodes(self, site: str | None = None) -> list[dict]:
        """Every node row, by name, with how many cameras each holds now.

        Args:
            site: only this site's nodes (None: every site's).

        Returns:
            Rows: name, site, capacity, pid, host, started_utc, heartbeat_utc, state, cameras (the ids it holds
            under a lease not expired, duties left out), heartbeat_age_s (by the database's clock), alive (running
            and heard from within its lease ttl: a node silent for longer has lost every lease it held).
        """
        held: dict[str, list[str]] = {}
        live = self.leases(site, live_only=True)
        for lease in live:
            if not is_duty(lease["camera_id"]):
                held.setdefault(lease["node"], []).append(lease["camera_id"])
        now = _agreed_time(self.database.query(_NOW_SQL)[0][0])
        sql, params = "SELECT * FROM nodes", []
        if site is not None:
            sql, params = sql + " WHERE site = ?", [site]
        return [
            {
                **dict(r),
                "cameras": held.get(r["name"], []),
                "heartbeat_age_s": round(age_s, 3),
                "alive": r["state"] == "running" and age_s < r["lease_ttl_s"],
            }
            for r in self.database.query(sql + " ORDER BY name", params)
            for age_s in [(now - datetime.fromisoformat(r["heartbeat_utc"])).total_seconds()]
        ]

    # -- leases -----------------------------------------------------------------------------------------
    def acquire(self, site: str, camera_id: str, node: str, ttl_s: float, *, free_for_s: float = 0.0) -> Lease | None:
        """Take a camera's lease if nobody holds it (never taken, released, or expired), with token + 1.

        Args:
            site: the site.
            camera_id: the camera (or duty).
            node: the node taking it.
            ttl_s: seconds the lease lasts without a renewal.
            free_for_s: only if it has been free for at least this long (a node above its fair share leaves
                freshly released cameras to the others first).

        Returns:
            The new lease, or None when another node holds it.
        """
        with self.database.transaction() as conn:
            now = database_now(conn)
            conn.execute(
                "INSERT INTO camera_leases(site, camera_id, node, token, acquired_utc, renewed_utc, expires_utc) "
                "VALUES (?, ?, NULL, 0, ?, ?, ?) ON CONFLICT (site, camera_id) DO NOTHING",
                (site, camera_id, _FREE_SINCE, _FREE_SINCE, _FREE_SINCE),
            )
            # One statement: of two nodes racing, the second finds the row taken (PostgreSQL re-checks the
            # condition on the row the first committed; SQLite's writers take turns).
            row = conn.execute(
                "UPDATE camera_leases SET node = ?, token = token + 1, acquired_utc = ?, renewed_utc = ?, "
                "expires_utc = ? WHERE site = ? AND camera_id = ? AND expires_utc <= ? RETURNING token",
                # A release sets expires_utc to its time: free means expired, whether released or not renewed.
                (node, clock.iso(now), clock.iso(now), _later(now, ttl_s), site, camera_id, _later(now, -free_for_s)),
            ).fetchone()
            if row is None:
                return None
            lease = Lease(site, camera_id, node, int(row[0]), _later(now, ttl_s))
            self.chain.append(conn, "lease_acquired", node, _camera_or_none(camera_id), _lease_details(lease))
        return lease

    def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        """Extend a lease still held under its token.

        Args:
            lease: the lease as last acquired or renewed.
            ttl_s: seconds it lasts from now.

        Returns:
            The renewed lease, or None when it is no longer this node's under this token (taken over).
        """
        return self.renew_all([lease], ttl_s)[0]

    def renew_all(self, leases: list[Lease], ttl_s: float) -> list[Lease | None]:
        """Extend several leases in one write transaction (a node's whole round: one turn of the write lock).

        Args:
            leases: the leases as last acquired or renewed.
            ttl_s: seconds they last from now.

        Returns:
            For each lease, in order: renewed, or None when it is no longer this node's under its token.
        """
        renewed: list[Lease | None] = []
        with self.database.transaction() as conn:
            now = database_now(conn)
            expires = _later(now, ttl_s)
            for lease in leases:
                count = conn.execute(
                    "UPDATE camera_leases SET renewed_utc = ?, expires_utc = ? "
                    "WHERE site = ? AND camera_id = ? AND node = ? AND token = ?",
                    (clock.iso(now), expires, lease.site, lease.camera_id, lease.node, lease.token),
                ).rowcount
                renewed.append(Lease(lease.site, lease.camera_id, lease.node, lease.token, expires) if count else None)
        return renewed

    def release(self, lease: Lease, reason: str = "released") -> bool:
        """Give a lease back: free for another node at once (its token stays; the next owner's is larger).

        Args:
            lease: the lease.
            reason: why, for the audit row (released, rebalanced, expired, stopped).

        Returns:
            Whether this node still held it under this token.
        """
        with self.database.transaction() as conn:
            now = clock.iso(database_now(conn))
            released = conn.execute(
                "UPDATE camera_leases SET node = NULL, expires_utc = ? "
                "WHERE site = ? AND camera_id = ? AND node = ? AND token = ?",
                (now, lease.site, lease.camera_id, lease.node, lease.token),
            ).rowcount
            if released:
                details = {**_lease_details(lease), "reason": reason}
                self.chain.append(conn, "lease_released", lease.node, _camera_or_none(lease.camera_id), details)
        return bool(released)

    def leases(self, site: str | None = None, *, live_only: bool = False) -> list[dict]:
        """The lease rows, by site and camera, with the database's time they were read at.

        Args:
            site: only this site's (None: every site's).
            live_only: only those held under a lease not expired.

        Returns:
            Rows: site, camera_id, node (None when free), token, acquired_utc, renewed_utc, expires_utc, now_utc.
        """
        now = clock.iso(_agreed_time(self.database.query(_NOW_SQL)[0][0]))  # reads work on a read-only register
        sql, params = "SELECT * FROM camera_leases WHERE 1 = 1", []
        if site is not None:
            sql, params = sql + " AND site = ?", [site]
        if live_only:
            sql, params = sql + " AND node IS NOT NULL AND expires_utc > ?", [*params, now]
        return [{**dict(r), "now_utc": now} for r in self.database.query(sql + " ORDER BY site, camera_id", params)]


def holds(conn: sqlite3.Connection | Any, site: str, camera_id: str, node: str, token: int) -> bool:
    """Whether a node still holds a camera under a token, inside the caller's write transaction; on PostgreSQL
    the lease row stays locked until that transaction ends, so that no takeover commits in between.

    Args:
        conn: the connection a `Database.transaction()` yielded.
        site: the site.
        camera_id: the camera.
        node: the node.
        token: the token its lease was acquired with.

    Returns:
        True while the lease names this node and this token.
    """
    # An UPDATE that changes nothing, not a SELECT: it takes the row's write lock on PostgreSQL.
    return bool(
        conn.execute(
            "UPDATE camera_leases SET token = token WHERE site = ? AND camera_id = ? AND node = ? AND token = ?",
            (site, camera_id, node, token),
        ).rowcount
    )


def _camera_or_none(camera_id: str) -> str | None:
    return None if is_duty(camera_id) else camera_id


def _lease_details(lease: Lease) -> dict:
    return {"site": lease.site, "lease": lease.camera_id, "token": lease.token, "expires_utc": lease.expires_utc}
