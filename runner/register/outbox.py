"""The outbox: what the register owes the outside world (MQTT, webhooks), written with what it reports.

One row per stored alert and per decision, inserted in the same transaction as that alert or decision, so a
row exists exactly when its alert or decision does (a failed write leaves neither). Each destination keeps a
cursor (`outbox_delivery.last_id`): the dispatcher (`runner.outputs.dispatcher`) delivers the rows after it in id
order, so in order per camera, and moves it only once the destination acknowledged: at least once, never lost.

What a row says (its JSON payload) is what `vigie replay --json` prints of an alert (`alert_fields`, the one home
of that shape), the snapshot's SHA-256 and where to fetch it (its path in the media folder): never the image,
never the source URL (nor any credential in it), never a decision's free-text note.

Rows go with their alert (ON DELETE CASCADE: the purge, an erasure). A test alert's rows are written but only
delivered to a destination that asked for tests (`include_tests`): by default test alerts reach nobody. Rows of an
alert the DPO restricted are not delivered while it is restricted (they are skipped for good: a restriction
limits the processing, and an alert pushed days late would surprise the control room).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runner.core.alerts import AlertRecord, canonical_json
from runner.register import clock
from runner.register.database import Database

EVENTS = ("alert", "decision")


def alert_fields(record: AlertRecord, alert_id: int | None, snapshot: str | None) -> dict[str, Any]:
    """The fields of an alert as `vigie replay --json` prints them and the outbox pushes them.

    Args:
        record: the alert.
        alert_id: its id in the register (None when it could not be stored).
        snapshot: where its image is (the caller chooses: an absolute path, or the path in the media folder).

    Returns:
        id, kind, rule_id, camera, t_s, ts_utc, track_id, subject, score, bbox, snapshot, config_revision,
        config_sha256, is_test, details.
    """
    return {
        "id": alert_id,
        "kind": record.kind,
        "rule_id": record.rule_id,
        "camera": record.camera_id,
        "t_s": record.t_s,
        "ts_utc": record.ts_utc,
        "track_id": record.track_id,
        "subject": record.subject,
        "score": record.score,
        "bbox": record.bbox,
        "snapshot": snapshot,
        "config_revision": record.config_revision,
        "config_sha256": record.config_sha256,
        "is_test": record.is_test,
        "details": record.details,
    }


def alert_payload(record: AlertRecord, alert_id: int, row: dict[str, Any]) -> dict[str, Any]:
    """The message pushed for a new alert.

    Args:
        record: the alert.
        alert_id: its id in the register (with `uid`, the key a receiver deduplicates on).
        row: its stored row (snapshot path and SHA-256, or why there is no image).

    Returns:
        `event` "alert", `site`, `uid`, the `alert_fields` (snapshot: its path in the media folder),
        `snapshot_sha256` and `snapshot_note`.
    """
    return {
        "event": "alert",
        "site": record.site,
        "uid": record.uid,
        **alert_fields(record, alert_id, row.get("snapshot")),
        "snapshot_sha256": row.get("snapshot_sha256"),
        "snapshot_note": row.get("snapshot_note"),
    }


def enqueue_alert(conn: Any, alert_id: int, record: AlertRecord, row: dict[str, Any]) -> None:
    """Write a new alert's outbox row, inside the transaction that stores the alert.

    Args:
        conn: the connection the alert's transaction yielded.
        alert_id: the alert's id.
        record: the alert.
        row: its stored row.
    """
    _insert(
        conn,
        record.site,
        record.camera_id,
        alert_id,
        "alert",
        record.kind,
        record.is_test,
        alert_payload(record, alert_id, row),
    )


def enqueue_decision(conn: Any, alert_id: int, decision: dict[str, Any]) -> None:
    """Write a decision's outbox row, inside the transaction that records the decision.

    Args:
        conn: the connection the decision's transaction yielded.
        alert_id: the alert decided on.
        decision: the decision row (decision, reason, follow_up, operator, decided_utc; its note stays in the
            register).
    """
    alert = conn.execute("SELECT uid, site, camera_id, kind, is_test FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    payload = {
        "event": "decision",
        "site": alert["site"],
        "uid": alert["uid"],
        "id": alert_id,
        "kind": alert["kind"],
        "camera": alert["camera_id"],
        "is_test": bool(alert["is_test"]),
        **{key: decision[key] for key in ("decision", "reason", "follow_up", "operator", "decided_utc")},
    }
    _insert(
        conn, alert["site"], alert["camera_id"], alert_id, "decision", alert["kind"], bool(alert["is_test"]), payload
    )


def _insert(
    conn: Any, site: str, camera_id: str, alert_id: int, event: str, kind: str, is_test: bool, payload: dict
) -> None:
    conn.execute(
        "INSERT INTO outbox(site, camera_id, alert_id, event, kind, is_test, payload, created_utc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (site, camera_id, alert_id, event, kind, int(is_test), canonical_json(payload), clock.iso(clock.utc_now())),
    )


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row, as the dispatcher reads it."""

    id: int
    site: str
    camera_id: str
    alert_id: int
    event: str
    kind: str
    is_test: bool
    restricted: bool
    payload: str  # canonical JSON: the exact bytes a webhook signature covers
    created_utc: str

    @property
    def message(self) -> dict[str, Any]:
        """The payload decoded.

        Returns:
            The JSON object the row pushes.
        """
        return dict(json.loads(self.payload))


class Outbox:
    """The outbox rows and each destination's delivery cursor, through the register's shared connection."""

    def __init__(self, database: Database):
        """The outbox of a register.

        Args:
            database: the register's shared connection.
        """
        self.database = database

    def open_destination(self, name: str, *, include_tests: bool) -> int:
        """A destination's cursor; a destination seen for the first time starts after the newest row (it is owed
        what is stored from now on, not the register's whole history).

        Args:
            name: the destination ("mqtt", "webhook:<name>").
            include_tests: whether it receives test alerts (kept for `vigie status`'s backlog).

        Returns:
            The id of the last row it acknowledged.
        """
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO outbox_delivery(destination, last_id, include_tests, attempts) "
                "VALUES (?, (SELECT COALESCE(MAX(id), 0) FROM outbox), ?, 0) "
                "ON CONFLICT (destination) DO UPDATE SET include_tests = excluded.include_tests",
                (name, int(include_tests)),
            )
            return int(conn.execute("SELECT last_id FROM outbox_delivery WHERE destination = ?", (name,)).fetchone()[0])

    def cursor(self, name: str) -> int:
        """A destination's cursor as the register has it (another node may have moved it).

        Args:
            name: the destination.

        Returns:
            The id of the last row it acknowledged; 0 for a destination never opened.
        """
        rows = self.database.query("SELECT last_id FROM outbox_delivery WHERE destination = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def after(self, last_id: int, limit: int = 100) -> list[OutboxEntry]:
        """The rows after a cursor, oldest first.

        Args:
            last_id: the cursor.
            limit: at most this many rows.

        Returns:
            The rows, each saying whether its alert is restricted now.
        """
        rows = self.database.query(
            "SELECT o.*, EXISTS (SELECT 1 FROM restrictions r WHERE r.alert_id = o.alert_id) AS restricted "
            f"FROM outbox o WHERE o.id > ? ORDER BY o.id LIMIT {int(limit)}",
            (last_id,),
        )
        return [
            OutboxEntry(
                id=int(r["id"]),
                site=r["site"],
                camera_id=r["camera_id"],
                alert_id=int(r["alert_id"]),
                event=r["event"],
                kind=r["kind"],
                is_test=bool(r["is_test"]),
                restricted=bool(r["restricted"]),
                payload=r["payload"],
                created_utc=r["created_utc"],
            )
            for r in rows
        ]

    def advance(self, name: str, last_id: int) -> None:
        """Move a destination's cursor forward (never back: a second dispatcher cannot undo the first's work).

        Args:
            name: the destination.
            last_id: the last row it acknowledged (or skipped).
        """
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE outbox_delivery SET last_id = ?, attempts = 0, last_error = NULL, delivered_utc = ? "
                "WHERE destination = ? AND last_id < ?",
                (last_id, clock.iso(clock.utc_now()), name, last_id),
            )

    def failed(self, name: str, error: str) -> None:
        """Record a failed attempt (the row stays owed).

        Args:
            name: the destination.
            error: why, in one line, without credentials.
        """
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE outbox_delivery SET attempts = attempts + 1, last_error = ?, last_attempt_utc = ? "
                "WHERE destination = ?",
                (error[:500], clock.iso(clock.utc_now()), name),
            )

    def backlog(self) -> list[dict[str, Any]]:
        """What each destination is still owed (`vigie status`).

        Returns:
            One dict per destination: destination, pending (rows it will receive), oldest_utc (of those),
            last_id, attempts (failed in a row), last_error, last_attempt_utc, delivered_utc.
        """
        owed = (
            "FROM outbox o WHERE o.id > d.last_id AND (d.include_tests = 1 OR o.is_test = 0) "
            "AND o.alert_id NOT IN (SELECT alert_id FROM restrictions)"
        )
        rows = self.database.query(
            f"SELECT d.*, (SELECT COUNT(*) {owed}) AS pending, (SELECT MIN(o.created_utc) {owed}) AS oldest_utc "
            "FROM outbox_delivery d ORDER BY d.destination"
        )
        keys = ("destination", "pending", "oldest_utc", "last_id", "attempts", "last_error", "last_attempt_utc")
        return [{**{k: r[k] for k in keys}, "delivered_utc": r["delivered_utc"]} for r in rows]


def backlog_lines(backlog: list[dict[str, Any]]) -> list[str]:
    """`vigie status`'s lines about the outbox: per destination, what it is owed and its last error.

    Args:
        backlog: `Outbox.backlog()`.

    Returns:
        A heading and one line per destination; nothing when no destination was ever started.
    """
    if not backlog:
        return []
    lines = ["outbox (alerts and decisions pushed out):"]
    for row in backlog:
        line = f"  {row['destination']:<24} {row['pending']} owed"
        if row["pending"]:
            line += f" since {row['oldest_utc']}"
        line += f", last delivery {row['delivered_utc'] or 'never'}"
        if row["attempts"]:
            line += f", {row['attempts']} failed attempt(s), last at {row['last_attempt_utc']}: {row['last_error']}"
        lines.append(line)
    return lines
