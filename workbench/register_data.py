"""The register as polars DataFrames, read-only, and the aggregates of the analysis dashboards.

The SQLite file is opened with `mode=ro`, so an analyst's dashboard can never write to the evidence
(decisions and pauses go through `runner.register.Register`, from the operator console only; a
statistics export, by the analyst role only, appends one `statistics_exported` audit row).
Times are parsed to UTC datetimes; the hour of day is taken in the site's time zone, because
"alerts at 23:00" means local time to the people who read the dashboard.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import polars as pl

from runner.core.access import Action, Principal, Role, require, role_from_env
from runner.core.alerts import KIND_NAMES
from runner.core.errors import StoreError, UsageError
from runner.register.backend import PgConnection, database_errors, parse_target
from runner.register.schema import open_connection
from workbench._setup_paths import PROJECT_ROOT, beside_register, register_path, zones_dir
from workbench.i18n import add_messages, t
from workbench.stats import wilson_interval

DEFAULT_TIMEZONE = "Europe/Paris"

# Columns of the joined alerts frame, with their dtypes, so that an empty register has the same shape.
_ALERT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "site": pl.String(),
    "camera_id": pl.String(),
    "rule_id": pl.String(),
    "kind": pl.String(),
    "ts_utc": pl.String(),
    "created_utc": pl.String(),
    "t_s": pl.Float64(),
    "subject": pl.String(),
    "track_id": pl.Int64(),
    "score": pl.Float64(),
    "bbox": pl.String(),
    "details": pl.String(),
    "is_test": pl.Boolean(),
    "phase": pl.String(),
    "mode": pl.String(),
    "config_revision": pl.Int64(),
    "config_sha256": pl.String(),
    "snapshot": pl.String(),
    "snapshot_note": pl.String(),
    "media_purged_utc": pl.String(),
    "status": pl.String(),
    "decision": pl.String(),
    "reason": pl.String(),
    "follow_up": pl.String(),
    "operator": pl.String(),
    "note": pl.String(),
    "decided_utc": pl.String(),
}
_AUDIT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "ts_utc": pl.String(),
    "event": pl.String(),
    "actor": pl.String(),
    "camera_id": pl.String(),
    "details": pl.String(),
}
_TIME_COLUMNS = ("ts_utc", "created_utc", "decided_utc", "media_purged_utc")


# The register's vocabulary as the apps show it (the values themselves stay the runner's identifiers).
add_messages(
    {lang: {f"register.kind.{kind}": name for kind, name in names.items()} for lang, names in KIND_NAMES.items()}
)
add_messages(
    {
        "fr": {
            "register.reason.fixture": "Élément fixe (mobilier, décor)",
            "register.reason.reflection": "Reflet",
            "register.reason.shadow": "Ombre",
            "register.reason.wrong_class": "Mauvais type d'objet",
            "register.reason.duplicate": "Doublon",
            "register.reason.other": "Autre",
            "register.follow_up.none": "Aucune suite",
            "register.follow_up.field_check": "Vérification sur place",
            "register.follow_up.intervention": "Intervention",
            "register.follow_up.transmitted_to_police": "Transmis à la police nationale",
            "register.follow_up.other": "Autre suite",
            "register.status.pending": "En attente",
            "register.status.confirmed": "Confirmée",
            "register.status.rejected": "Rejetée",
        },
        "en": {
            "register.reason.fixture": "Fixture (furniture, scenery)",
            "register.reason.reflection": "Reflection",
            "register.reason.shadow": "Shadow",
            "register.reason.wrong_class": "Wrong kind of object",
            "register.reason.duplicate": "Duplicate",
            "register.reason.other": "Other",
            "register.follow_up.none": "No follow-up",
            "register.follow_up.field_check": "Field check",
            "register.follow_up.intervention": "Intervention",
            "register.follow_up.transmitted_to_police": "Transmitted to the national police",
            "register.follow_up.other": "Other follow-up",
            "register.status.pending": "Pending",
            "register.status.confirmed": "Confirmed",
            "register.status.rejected": "Rejected",
        },
    }
)


def value_label(field: str, value: object) -> str:
    """How the apps show a register value (kind, reason, follow_up, status); unknown values as they are.

    Args:
        field: "kind", "reason", "follow_up" or "status".
        value: the register's identifier, such as "person_down"; None shows as "".

    Returns:
        The label in the current language, or str(value) when it has none.
    """
    if value is None:
        return ""
    key = f"register.{field}.{value}"
    text = t(key)
    return str(value) if text == key else text


# -- where things are (the register and zones dir come from workbench._setup_paths) ----------
def media_dir(db_path: str | Path) -> Path:
    """Snapshots folder: $VIGIE_MEDIA_DIR, else `media/` beside the register (the runner's default), or
    var/media for a PostgreSQL register.

    Args:
        db_path: the register's file, or its `postgresql://` URL.

    Returns:
        The folder; it may not exist.
    """
    return Path(os.environ.get("VIGIE_MEDIA_DIR") or beside_register("media", db_path))


def export_root() -> Path:
    """Where dashboard exports go (VIGIE_EXPORT_DIR, default var/exports/): no export lands outside it.

    Returns:
        The export root; it is not created here.
    """
    value = os.environ.get("VIGIE_EXPORT_DIR", "").strip()
    return Path(value).expanduser() if value else PROJECT_ROOT / "var" / "exports"


# A read-only register connection: an SQLite file, or a PostgreSQL database through the runner's adapter
# (the same statements, rows read by name or position).
RegisterConnection = sqlite3.Connection | PgConnection


def connect_readonly(db_path: str | Path) -> RegisterConnection:
    """A read-only connection; a missing register is a one-line error, not an empty file created by mistake.

    Args:
        db_path: the register's file, or its `postgresql://` URL (a read-only session; never a password in
            an error).

    Returns:
        An open connection (rows by column name, SQLite with a 30 s busy timeout) that the caller closes.

    Raises:
        StoreError: no such file or database, or not a readable register (no alerts table).
    """
    target = parse_target(db_path)
    if target.is_postgres:
        return open_connection(
            target, read_only=True, on_open=lambda conn: conn.execute("SELECT 1 FROM alerts LIMIT 1")
        )
    path = Path(db_path).resolve()
    if not path.is_file():
        raise StoreError(f"register {db_path}: no such file (start the runner first, or set VIGIE_DB)")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("SELECT 1 FROM alerts LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"register {db_path}: {exc}") from None
    return conn


def latest_alert_id(db_path: str | Path) -> int:
    """The newest alert's id (0 for none): where a console starts polling with after_id.

    Args:
        db_path: the register's file.

    Returns:
        The largest alert id, 0 when the register holds no alert.

    Raises:
        StoreError: the register is missing or unreadable.
    """
    conn = connect_readonly(db_path)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM alerts").fetchone()[0])
    except database_errors() as exc:
        raise StoreError(_read_problem(db_path, exc)) from None
    finally:
        conn.close()


# -- loading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegisterFrames:
    alerts: pl.DataFrame  # one row per alert, with its decision (null while pending)
    audit: pl.DataFrame


def load_register(db_path: str | Path | None = None, include_restricted: bool | None = None) -> RegisterFrames:
    """The whole register, read-only: the alerts joined with their decisions, and the audit log.

    Args:
        db_path: the register's file; None for VIGIE_DB (default var/vigie.db).
        include_restricted: include the alerts the DPO restricted (`vigie rights restrict`); None: only when
            the server's role ($VIGIE_ROLE) is dpo, so that operators and analysts never see them.

    Returns:
        The two frames, with the same columns even when empty. Times are UTC datetimes; the alert box
        becomes x0, y0, x1, y1 and its centre cx, cy (0-1, null without a box); decision_delay_s is the time
        from the event (ts_utc) to its decision, in seconds (null while pending).

    Raises:
        StoreError: the register is missing or unreadable.
    """
    conn = connect_readonly(db_path or register_path())
    try:
        if include_restricted is None:
            include_restricted = _role_is_dpo()
        return RegisterFrames(alerts=_load_alerts(conn, include_restricted), audit=_load_audit(conn))
    except database_errors() as exc:
        raise StoreError(_read_problem(db_path or register_path(), exc)) from None
    finally:
        conn.close()


def _role_is_dpo() -> bool:
    try:
        return role_from_env() is Role.DPO
    except UsageError:  # an unknown role sees what the least entitled one sees
        return False


def _read_problem(db_path: str | Path, exc: BaseException) -> str:
    """A failed read in one line: the register (a URL without its password) and the error's first line."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"register {parse_target(db_path).display}: {first_line}"


def has_table(conn: RegisterConnection, table: str) -> bool:
    """Whether the register has this table (an older SQLite register may lack the newer ones), on either engine.

    Args:
        conn: a register connection outside a transaction.
        table: the table's name (an identifier of the schema, never user input).

    Returns:
        True when a query of the table runs.
    """
    try:
        conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
    except database_errors():
        return False
    return True


def _restricted_filter(conn: RegisterConnection, include_restricted: bool) -> str:
    """The WHERE clause that leaves out restricted alerts (none on a register older than the rights tables)."""
    if include_restricted or not has_table(conn, "restrictions"):
        return ""
    return " WHERE a.id NOT IN (SELECT alert_id FROM restrictions)"


def _load_alerts(conn: RegisterConnection, include_restricted: bool = False) -> pl.DataFrame:
    rows = conn.execute(
        "SELECT a.id, a.site, a.camera_id, a.rule_id, a.kind, a.ts_utc, a.created_utc, a.t_s, a.subject, "
        "a.track_id, a.score, a.bbox, a.details, a.is_test, a.phase, a.mode, a.config_revision, a.config_sha256, "
        "a.snapshot, a.snapshot_note, a.media_purged_utc, a.status, d.decision, d.reason, d.follow_up, "
        "d.operator, d.note, d.decided_utc FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.id"
        + _restricted_filter(conn, include_restricted)
        + " ORDER BY a.id"
    ).fetchall()
    frame = pl.DataFrame([dict(r) for r in rows], schema=_ALERT_SCHEMA, orient="row")
    boxes = [_bbox(text) for text in frame["bbox"].to_list()]
    frame = frame.with_columns(
        *(pl.col(c).str.to_datetime(time_zone="UTC", time_unit="ms") for c in _TIME_COLUMNS),
        pl.Series("x0", [b[0] for b in boxes], dtype=pl.Float64),
        pl.Series("y0", [b[1] for b in boxes], dtype=pl.Float64),
        pl.Series("x1", [b[2] for b in boxes], dtype=pl.Float64),
        pl.Series("y1", [b[3] for b in boxes], dtype=pl.Float64),
    ).drop("bbox")
    return frame.with_columns(
        ((pl.col("x0") + pl.col("x1")) / 2).alias("cx"),
        ((pl.col("y0") + pl.col("y1")) / 2).alias("cy"),
        # Time to decision: from the event itself (ts_utc, the frame's time) to the decision, as the public
        # lived it; storing the row can lag the event (a replay, a busy runner).
        ((pl.col("decided_utc") - pl.col("ts_utc")).dt.total_milliseconds() / 1000.0).alias("decision_delay_s"),
    )


def _bbox(text: str | None) -> tuple[float | None, ...]:
    if not text:
        return (None, None, None, None)
    values = json.loads(text)
    return tuple(float(v) for v in values) if len(values) == 4 else (None, None, None, None)


def _load_audit(conn: RegisterConnection) -> pl.DataFrame:
    rows = conn.execute("SELECT id, ts_utc, event, actor, camera_id, details FROM audit ORDER BY id").fetchall()
    frame = pl.DataFrame([dict(r) for r in rows], schema=_AUDIT_SCHEMA, orient="row")
    return frame.with_columns(pl.col("ts_utc").str.to_datetime(time_zone="UTC", time_unit="ms"))


def site_timezone(site: str | None, zones: Path | None = None) -> str:
    """The `timezone` of zones/<site>/site.yaml, else Europe/Paris (the default of every site config).

    Args:
        site: the site's name; None or "" gives the default.
        zones: the folder of site configs; None for VIGIE_ZONES_DIR (default zones/).

    Returns:
        An IANA time zone name; the default when the config is missing or invalid.
    """
    if not site:
        return DEFAULT_TIMEZONE
    path = (zones or zones_dir()) / site / "site.yaml"
    try:
        from runner.config.loading import load_config

        return load_config(path).config.timezone
    except Exception:  # a missing or invalid config must not stop an analysis of past alerts
        return DEFAULT_TIMEZONE


# -- filters ------------------------------------------------------------------------------------
def filter_alerts(
    alerts: pl.DataFrame,
    *,
    include_tests: bool = True,
    cameras: list[str] | None = None,
    kinds: list[str] | None = None,
    revisions: list[int] | None = None,
    sites: list[str] | None = None,
) -> pl.DataFrame:
    """The alerts that pass every filter given; an empty or None list filters nothing.

    Args:
        alerts: the alerts frame of `load_register`.
        include_tests: keep test alerts.
        sites: sites to keep (revision numbers are per site: compare them within one).
        cameras: camera ids to keep.
        kinds: event kinds to keep.
        revisions: config revisions to keep.

    Returns:
        The matching rows, in their order.
    """
    if not include_tests:
        alerts = alerts.filter(~pl.col("is_test"))
    if sites:
        alerts = alerts.filter(pl.col("site").is_in(sites))
    if cameras:
        alerts = alerts.filter(pl.col("camera_id").is_in(cameras))
    if kinds:
        alerts = alerts.filter(pl.col("kind").is_in(kinds))
    if revisions:
        alerts = alerts.filter(pl.col("config_revision").is_in(revisions))
    return alerts


# -- aggregates ---------------------------------------------------------------------------------
def _as_list(by: str | list[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def with_local_hour(alerts: pl.DataFrame, timezone: str = DEFAULT_TIMEZONE) -> pl.DataFrame:
    """The alerts with an `hour` column: the hour of day (0-23) of ts_utc in the site's time zone.

    Args:
        alerts: a frame with a UTC ts_utc column.
        timezone: an IANA time zone name.

    Returns:
        The frame with `hour` added.
    """
    return alerts.with_columns(pl.col("ts_utc").dt.convert_time_zone(timezone).dt.hour().alias("hour"))


def alert_counts(alerts: pl.DataFrame, by: str | list[str]) -> pl.DataFrame:
    """Number of alerts per group, largest first (ties in group order).

    Args:
        alerts: the alerts frame.
        by: the column, or columns, to group by.

    Returns:
        The group columns and `alerts`, the count.
    """
    keys = _as_list(by)
    return (
        alerts.group_by(keys)
        .agg(pl.len().alias("alerts"))
        .sort(["alerts", *keys], descending=[True] + [False] * len(keys))
    )


def alerts_per_hour(alerts: pl.DataFrame, timezone: str = DEFAULT_TIMEZONE) -> pl.DataFrame:
    """Alerts per local hour of day, all 24 hours listed (zeros included) so the profile reads at a glance.

    Args:
        alerts: the alerts frame.
        timezone: the IANA time zone the hours are taken in.

    Returns:
        24 rows, hours 0 to 23 in order: `hour` and `alerts` (UInt32).
    """
    counts = with_local_hour(alerts, timezone).group_by("hour").agg(pl.len().alias("alerts"))
    hours = pl.DataFrame({"hour": list(range(24))}, schema={"hour": counts.schema["hour"]})
    return hours.join(counts, on="hour", how="left").with_columns(pl.col("alerts").fill_null(0).cast(pl.UInt32))


def validation_stats(alerts: pl.DataFrame, by: str | list[str], confidence: float = 0.95) -> pl.DataFrame:
    """Per group: alerts, confirmed, rejected, pending, validation rate = confirmed / decided, with its Wilson
    interval.

    Args:
        alerts: the alerts frame.
        by: the column, or columns, to group by.
        confidence: the interval's level, between 0 and 1.

    Returns:
        One row per group, in group order: alerts, confirmed, rejected, pending, median_delay_s (seconds to
        decision), validation_rate, rate_low and rate_high (null where nothing was decided).
    """
    keys = _as_list(by)
    table = (
        alerts.group_by(keys)
        .agg(
            pl.len().alias("alerts"),
            (pl.col("status") == "confirmed").sum().alias("confirmed"),
            (pl.col("status") == "rejected").sum().alias("rejected"),
            (pl.col("status") == "pending").sum().alias("pending"),
            pl.col("decision_delay_s").median().alias("median_delay_s"),
        )
        .sort(keys)
    )
    estimates = [
        wilson_interval(c, c + r, confidence)
        for c, r in zip(table["confirmed"].to_list(), table["rejected"].to_list(), strict=True)
    ]
    return table.with_columns(
        pl.Series("validation_rate", [e.value for e in estimates], dtype=pl.Float64),
        pl.Series("rate_low", [e.low for e in estimates], dtype=pl.Float64),
        pl.Series("rate_high", [e.high for e in estimates], dtype=pl.Float64),
    )


def rejection_causes(alerts: pl.DataFrame, by: str | list[str] = "kind") -> pl.DataFrame:
    """False alerts (rejected) per group and reason, with each reason's share of the group's rejections.

    Args:
        alerts: the alerts frame.
        by: the column, or columns, to group by.

    Returns:
        The group columns, reason, rejected (count) and share (0-1); the most frequent reason first in each
        group.
    """
    keys = _as_list(by)
    rejected = alerts.filter(pl.col("status") == "rejected")
    return (
        rejected.group_by([*keys, "reason"])
        .agg(pl.len().alias("rejected"))
        .with_columns((pl.col("rejected") / pl.col("rejected").sum().over(keys)).alias("share"))
        .sort([*keys, "rejected", "reason"], descending=[False] * len(keys) + [True, False])
    )


def follow_up_counts(alerts: pl.DataFrame, by: str | list[str] = "kind") -> pl.DataFrame:
    """Decisions per group and follow-up, the most frequent follow-up first in each group.

    Args:
        alerts: the alerts frame.
        by: the column, or columns, to group by.

    Returns:
        The group columns, follow_up and decisions (count); pending alerts are left out.
    """
    keys = _as_list(by)
    decided = alerts.filter(pl.col("decision").is_not_null())
    return (
        decided.group_by([*keys, "follow_up"])
        .agg(pl.len().alias("decisions"))
        .sort([*keys, "decisions", "follow_up"], descending=[False] * len(keys) + [True, False])
    )


def decision_delays(alerts: pl.DataFrame, by: str | list[str] = "kind") -> pl.DataFrame:
    """Time to decision (seconds from the event, ts_utc, to the operator's decision) per group.

    Args:
        alerts: the alerts frame.
        by: the column, or columns, to group by.

    Returns:
        One row per group with a decision, in group order: decisions, median_s, mean_s, p90_s (nearest rank)
        and max_s.
    """
    keys = _as_list(by)
    decided = alerts.filter(pl.col("decision_delay_s").is_not_null())
    return (
        decided.group_by(keys)
        .agg(
            pl.len().alias("decisions"),
            pl.col("decision_delay_s").median().alias("median_s"),
            pl.col("decision_delay_s").mean().alias("mean_s"),
            pl.col("decision_delay_s").quantile(0.9, interpolation="nearest").alias("p90_s"),
            pl.col("decision_delay_s").max().alias("max_s"),
        )
        .sort(keys)
    )


def revision_comparison(alerts: pl.DataFrame, by: str | list[str] = "config_revision") -> pl.DataFrame:
    """Each config revision side by side: volume, period covered, validation rate and time to decision.

    Args:
        alerts: the alerts frame.
        by: the revision column, or columns.

    Returns:
        The columns of `validation_stats`, then first_utc and last_utc (the first and last alert), one row
        per revision in order.
    """
    keys = _as_list(by)
    periods = alerts.group_by(keys).agg(
        pl.col("ts_utc").min().alias("first_utc"),
        pl.col("ts_utc").max().alias("last_utc"),
    )
    return validation_stats(alerts, keys).join(periods, on=keys, how="left").sort(keys)


def timeline(alerts: pl.DataFrame, every: str = "1h", by: str = "kind") -> pl.DataFrame:
    """Alerts per time bucket (`every`: a polars duration such as "1h" or "1d") and group.

    Args:
        alerts: a frame with a ts_utc datetime column.
        every: the bucket length, as a polars duration.
        by: the group column.

    Returns:
        bucket (the bucket's start), the group column and alerts, sorted by bucket then group; the same
        columns, without rows, for no alert.
    """
    if alerts.is_empty():
        return pl.DataFrame(schema={"bucket": alerts.schema["ts_utc"], by: pl.String, "alerts": pl.UInt32})
    return (
        alerts.with_columns(pl.col("ts_utc").dt.truncate(every).alias("bucket"))
        .group_by(["bucket", by])
        .agg(pl.len().alias("alerts"))
        .sort(["bucket", by])
    )


def heatmap_counts(alerts: pl.DataFrame, bins_x: int = 32, bins_y: int = 18) -> np.ndarray:
    """Counts of alert box centres on a grid over the image (rows top to bottom), coordinates being 0-1.

    Args:
        alerts: a frame with cx and cy columns; alerts without a box (null centre) are left out.
        bins_x: the grid's columns, across the image.
        bins_y: the grid's rows, down the image.

    Returns:
        An int array of shape (bins_y, bins_x), row 0 at the top of the image.
    """
    centres = alerts.filter(pl.col("cx").is_not_null() & pl.col("cy").is_not_null())
    grid, _, _ = np.histogram2d(
        centres["cy"].to_numpy(),
        centres["cx"].to_numpy(),
        bins=(bins_y, bins_x),
        range=((0.0, 1.0), (0.0, 1.0)),
    )
    return grid.astype(int)


def latest_snapshot(alerts: pl.DataFrame, camera_id: str, media: Path) -> Path | None:
    """The newest snapshot still on disk for a camera (the background of its heatmap).

    Args:
        alerts: the alerts frame.
        camera_id: the camera.
        media: the snapshots folder (see `media_dir`).

    Returns:
        The image file, or None when no snapshot of the camera is left inside the folder.
    """
    candidates = alerts.filter(
        (pl.col("camera_id") == camera_id) & pl.col("snapshot").is_not_null() & pl.col("media_purged_utc").is_null()
    ).sort("id", descending=True)
    for relative in candidates["snapshot"].to_list():
        path = confined_path(media, relative)
        if path is not None and path.is_file():
            return path
    return None


# -- export -------------------------------------------------------------------------------------
EXPORT_FORMATS = ("csv", "parquet")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def confined_path(root: Path, relative: str) -> Path | None:
    """root / relative, or None when it would leave root (absolute path, '..', symlink out).

    Args:
        root: the folder to stay in.
        relative: a path given from outside (a register value, a folder name typed in).

    Returns:
        The resolved path (root itself included), or None.
    """
    root = Path(root).resolve()
    target = (root / relative).resolve()
    return target if target == root or target.is_relative_to(root) else None


def export_folder(root: Path, name: str) -> Path:
    """The folder an export goes to: a plain name (or sub/name) under the export root, never outside it.

    Args:
        root: the export root.
        name: the folder name the analyst typed; surrounding spaces are ignored.

    Returns:
        The resolved folder; it is not created here.

    Raises:
        ValueError: an empty, absolute or '..' name, or one that resolves to root or outside it.
    """
    name = name.strip()
    if not name or Path(name).is_absolute() or any(part in ("..", "") for part in Path(name).parts):
        raise ValueError(f"export folder {name!r}: give a relative folder name inside {root}")
    target = confined_path(root, name)
    if target is None or target == Path(root).resolve():
        raise ValueError(f"export folder {name!r}: must stay inside {root}")
    return target


def export_statistics(
    tables: dict[str, pl.DataFrame],
    root: Path,
    folder: str,
    fmt: str,
    *,
    by: Principal,
    db_path: str | Path,
    media: Path | None = None,
) -> list[Path]:
    """An analyst's export: role checked, files written under the export root, then one audit row
    (user, role, folder, format, tables and row counts). Files whose export cannot be logged are removed.

    Args:
        tables: the tables by name; each becomes <name>.<fmt>.
        root: the export root.
        folder: the folder under root, as the analyst typed it.
        fmt: "csv" or "parquet".
        by: who exports; the role must allow exporting statistics.
        db_path: the register the audit row goes to, a file or a URL (opened for writing, never created).
        media: the snapshots folder handed to the register; None for its default.

    Returns:
        The files written.

    Raises:
        PermissionDenied: the role may not export.
        StoreError: the register cannot be opened, or the audit row cannot be written.
        ValueError: a bad folder, format or table name (see `export_tables`).
    """
    from runner.register import Register

    require(by, Action.EXPORT_STATISTICS)
    with Register(db_path, media, create=False) as register:  # opened first: no unlogged export
        written = export_tables(tables, root, folder, fmt)
        try:
            register.audit(
                "statistics_exported",
                by.user,
                None,
                {
                    **by.audit_details(),
                    "folder": written[0].parent.relative_to(Path(root).resolve()).as_posix() if written else folder,
                    "format": fmt,
                    "rows": {name: table.height for name, table in tables.items()},
                },
            )
        except StoreError:
            for path in written:
                path.unlink(missing_ok=True)
            raise
    return written


def export_tables(tables: dict[str, pl.DataFrame], root: Path, folder: str, fmt: str) -> list[Path]:
    """Write each table as <folder>/<name>.<fmt> under the export root; returns the files written.

    Args:
        tables: the tables by name.
        root: the export root.
        folder: the folder under root (see `export_folder`).
        fmt: "csv" or "parquet".

    Returns:
        The files written, in the order of `tables`.

    Raises:
        ValueError: an unknown format, a folder outside root, or a table name with other characters than
            letters, digits, '_', '-' and '.' (the tables before it are already written).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    target = export_folder(root, folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        if not _SAFE_NAME.match(name):
            raise ValueError(f"table name {name!r}: letters, digits, '_', '-' and '.' only")
        path = target / f"{name}.{fmt}"
        if fmt == "csv":
            table.write_csv(path)
        else:
            table.write_parquet(path)
        written.append(path)
    return written


# -- the analysts' view -------------------------------------------------------------------------
PSEUDONYM_KEY_ENV = "VIGIE_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE = "pseudonym.key"
# What aggregate review does not need and an analyst must not see: images, free text, identities.
ANALYST_HIDDEN_ALERT_COLUMNS = ("snapshot", "snapshot_note", "note", "details")
_PROCESS_KEY = secrets.token_bytes(32)


def pseudonym_key(db_path: str | Path) -> bytes:
    """The server's secret for operator pseudonyms: $VIGIE_PSEUDONYM_KEY, else `pseudonym.key` beside the
    register (32 random bytes, created once, readable by the server's user only).

    Args:
        db_path: the register's file.

    Returns:
        The key's bytes.
    """
    value = os.environ.get(PSEUDONYM_KEY_ENV, "").strip()
    if value:
        return value.encode("utf-8")
    path = beside_register(PSEUDONYM_KEY_FILE, db_path)
    try:  # created once, never overwritten: pseudonyms stay stable across restarts
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, secrets.token_bytes(32))
        finally:
            os.close(descriptor)
    except FileExistsError:
        pass
    except OSError:  # a read-only folder: pseudonyms for this process only, never the names themselves
        return _PROCESS_KEY
    return path.read_bytes()


def pseudonym(identity: str | None, key: bytes) -> str | None:
    """A stable pseudonym for an operator: the same name always gives the same one, and without the
    key nobody can tell whose it is (HMAC-SHA256, not a plain hash a list of names would reverse).

    Args:
        identity: the operator's name or login; None stays None.
        key: the server's secret (`pseudonym_key`).

    Returns:
        "op-" and 10 hex digits, or None.
    """
    if identity is None:
        return None
    return "op-" + hmac.new(key, identity.encode("utf-8"), hashlib.sha256).hexdigest()[:10]


def analyst_view(frames: RegisterFrames, key: bytes) -> RegisterFrames:
    """The register as an analyst may see it: operators pseudonymised, no snapshot, note or free-text details.

    Args:
        frames: the register of `load_register`.
        key: the pseudonyms' secret (`pseudonym_key`).

    Returns:
        The alerts without `ANALYST_HIDDEN_ALERT_COLUMNS` and with `operator` pseudonymised; the audit log
        with its actors pseudonymised and without its details (reasons, names, paths).
    """
    alerts = frames.alerts.drop([c for c in ANALYST_HIDDEN_ALERT_COLUMNS if c in frames.alerts.columns])
    alerts = alerts.with_columns(
        pl.Series("operator", [pseudonym(o, key) for o in alerts["operator"].to_list()], dtype=pl.String)
    )
    audit = frames.audit.drop("details").with_columns(
        pl.Series("actor", [pseudonym(a, key) for a in frames.audit["actor"].to_list()], dtype=pl.String)
    )
    return RegisterFrames(alerts=alerts, audit=audit)
