"""`vigie rights`: the DPO answers the rights requests of the persons filmed (access, restriction, erasure).

- `find` lists what the register holds for a place and time (alerts, snapshots, decisions);
- `export` writes those alerts (JSON) and their snapshots, with everything but the alert's own subject
  blurred: only the box of the tracked person or object the alert is about stays sharp (the requester,
  once the DPO has checked it is them), every other person and every privacy mask is blurred (privacy
  masks are already blacked out at capture, and stay so). `--blur-all` keeps nothing sharp;
- `restrict` hides alerts from operators and analysts (`lift` ends it); the records stay, and are
  verified, for their legal duration;
- `erase` removes the alerts' media; their legal fields and decisions stay (décret n°2023-828: the
  register of alerts and their follow-ups is kept for its legal duration);
- `open`, `close` and `list`: the requests themselves; the DPO answers within a month
  (ANSWER_DEADLINE_DAYS), and `list` flags the open requests past it.

Each action needs the DPO role (checked before the register is even opened: a refusal writes nothing)
and is audited with the request's reference and the DPO's identity.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cv2
import numpy as np

from runner.core.access import Action, Principal, require
from runner.core.errors import UsageError
from runner.register import clock
from runner.register.audit import id_ranges
from runner.register.rights import ANSWER_DEADLINE_DAYS, check_reference

if TYPE_CHECKING:
    from runner.register import Register

MAX_SPAN = timedelta(days=31)  # a request names a place and a time, not a month of recordings
# Alert fields a person receives; the rest (operator names and notes, sources, models, digests) is not theirs.
EXPORTED_FIELDS = (
    "id",
    "site",
    "camera_id",
    "kind",
    "rule_id",
    "ts_utc",
    "score",
    "bbox",
    "status",
    "decision",
    "reason",
    "follow_up",
    "decided_utc",
)
BLUR_BLOCKS_ACROSS = 40  # pixelation blocks across the image's longer side: a face becomes one or two blocks


@dataclass(frozen=True)
class TimeSpan:
    """A camera (None: every camera) and an interval of UTC time stamps, as the register stores them."""

    camera_id: str | None
    from_utc: str
    to_utc: str

    def details(self) -> dict[str, Any]:
        """What the audit row records of the search.

        Returns:
            camera_id, from_utc and to_utc.
        """
        return {"camera_id": self.camera_id, "from_utc": self.from_utc, "to_utc": self.to_utc}


def parse_time(text: str, timezone: str | None, what: str) -> datetime:
    """A time the DPO typed: ISO 8601, with an offset (`Z`, `+01:00`) or in `timezone`.

    Args:
        text: e.g. "2026-05-14T21:30+02:00", or "2026-05-14 21:30" with a timezone.
        timezone: an IANA zone for times without an offset, or None (such a time is then refused).
        what: the option's name, for the error message.

    Returns:
        The time, timezone-aware.

    Raises:
        UsageError: not a time, an unknown zone, or no offset and no zone.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} {text[:40]!r}: not a time (e.g. 2026-05-14T21:30+02:00)") from None
    if moment.tzinfo is not None:
        return moment
    if not timezone:
        raise UsageError(
            f"{what} {text[:40]!r} has no UTC offset: add one (Z, +02:00) or pass --timezone (e.g. Europe/Paris)"
        )
    try:
        return moment.replace(tzinfo=ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone {timezone[:40]!r}: not a time zone (e.g. Europe/Paris)") from None


def time_span(camera_id: str | None, start: str, end: str, timezone: str | None = None) -> TimeSpan:
    """The place and time a request is about.

    Args:
        camera_id: the camera, or None for every camera.
        start: the first time, as typed.
        end: the last time, as typed.
        timezone: the zone of times typed without an offset.

    Returns:
        The span, in the register's UTC time stamps.

    Raises:
        UsageError: a bad time, an end before the start, or a span longer than MAX_SPAN.
    """
    first, last = parse_time(start, timezone, "--from"), parse_time(end, timezone, "--to")
    if last < first:
        raise UsageError(f"--to {end[:40]!r} is before --from {start[:40]!r}")
    if last - first > MAX_SPAN:
        raise UsageError(f"--from/--to span {last - first}: at most {MAX_SPAN.days} days per request")
    return TimeSpan(camera_id or None, clock.iso(first), clock.iso(last))


# -- the operations ----------------------------------------------------------------------------------------------
def find(register: Register, principal: Principal, reference: str, span: TimeSpan) -> tuple[list[dict], int]:
    """What the register holds for a place and time, restricted alerts included; audited `rights_find`.

    Args:
        register: the register (writable: the search is audited).
        principal: the DPO.
        reference: the request's reference (created as an access request when new).
        span: the camera and time.

    Returns:
        (the alerts with their decisions and restriction, the audit row's id).
    """
    require(principal, Action.RIGHTS_ACCESS)
    alerts = register.rights.alerts_in(span.camera_id, span.from_utc, span.to_utc)
    audit_id = register.rights.record_access(
        reference,
        "rights_find",
        by=principal,
        kind="access",
        details=span.details() | {"alert_ids": _ranges(alerts)},
    )
    return alerts, audit_id


def select_alerts(register: Register, alert_ids: list[int] | None, span: TimeSpan | None) -> list[int]:
    """The alerts an action is about: the ids given, or every alert of the span.

    Args:
        register: the register.
        alert_ids: ids given with --alert, or None.
        span: a camera and time, or None.

    Returns:
        The alert ids, sorted, without repeats.

    Raises:
        UsageError: neither or both given, or the span holds no alert.
    """
    if bool(alert_ids) == (span is not None):
        raise UsageError("name the alerts with --alert ID (repeatable) or with --camera, --from and --to, not both")
    if span is None:
        return sorted(set(alert_ids or ()))
    ids = [a["id"] for a in register.rights.alerts_in(span.camera_id, span.from_utc, span.to_utc)]
    if not ids:
        raise UsageError(
            f"no alert {'on ' + span.camera_id + ' ' if span.camera_id else ''}between "
            f"{span.from_utc} and {span.to_utc}"
        )
    return ids


def export(
    register: Register,
    principal: Principal,
    reference: str,
    alert_ids: list[int],
    out_dir: Path,
    *,
    blur_all: bool = False,
) -> dict[str, Any]:
    """Write the alerts (alerts.json) and their snapshots, everything but each alert's subject blurred.

    The export is audited (`rights_export`) before anything is written; a failure removes what was written.

    Args:
        register: the register.
        principal: the DPO.
        reference: the request's reference.
        alert_ids: the alerts to export.
        out_dir: a new or empty folder.
        blur_all: blur the subject too (the requester is someone else in the image).

    Returns:
        A summary: folder, alerts, images, audit_id.

    Raises:
        UsageError: the folder is not empty, or an alert does not exist.
    """
    require(principal, Action.RIGHTS_ACCESS)
    check_reference(reference)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"--out {out_dir}: must be a new or empty folder")
    alerts = [register.alert(i) for i in alert_ids]
    missing = [i for i, a in zip(alert_ids, alerts, strict=True) if a is None]
    if missing:
        raise UsageError(f"no alert with id {', '.join(map(str, missing[:10]))}")
    audit_id = register.rights.record_access(
        reference,
        "rights_export",
        by=principal,
        kind="access",
        details={"alert_ids": _ranges(alerts), "folder": out_dir.name, "blur_all": blur_all},
    )
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        entries, images = _write_export(register, [a for a in alerts if a], out_dir, blur_all)
        document = {
            "request": reference,
            "exported_utc": clock.iso(clock.utc_now()),
            "exported_by": principal.user,
            "blurring": "every person and privacy mask blurred"
            + ("" if blur_all else ", except the box of the alert's own subject (bbox)"),
            "alerts": entries,
        }
        (out_dir / "alerts.json").write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        else:
            _empty(out_dir)
        raise
    return {"folder": str(out_dir), "alerts": len(entries), "images": images, "audit_id": audit_id}


def _write_export(
    register: Register, alerts: list[dict], out_dir: Path, blur_all: bool
) -> tuple[list[dict[str, Any]], int]:
    entries, images = [], 0
    for alert in alerts:
        entry: dict[str, Any] = {name: alert.get(name) for name in EXPORTED_FIELDS}
        entry["snapshot"] = _export_snapshot(register, alert, out_dir, blur_all)
        images += entry["snapshot"].endswith(".jpg")
        entries.append(entry)
    return entries, images


def _export_snapshot(register: Register, alert: dict, out_dir: Path, blur_all: bool) -> str:
    """The exported image's file name, or why there is none."""
    if alert.get("media_purged_utc"):
        return "erased (retention or a rights request)"
    path = register.snapshot_file(alert)
    if path is None:
        return "none" if not alert.get("snapshot") else "unavailable"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return "unreadable"
    keep = None if blur_all else subject_box(alert)
    ok, data = cv2.imencode(".jpg", blur_except(image, keep), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        return "unreadable"
    name = f"alert_{alert['id']}.jpg"
    (out_dir / name).write_bytes(data.tobytes())
    return name


def subject_box(alert: dict) -> tuple[float, float, float, float] | None:
    """The box to keep sharp: the alert's box when it is about one tracked person or object, else None.

    A crowd or zone-wide alert (no track) has a box holding many people: nothing is kept sharp then.

    Args:
        alert: the alert as the register returns it.

    Returns:
        Its normalised xyxy box, or None.
    """
    bbox = alert.get("bbox")
    if alert.get("track_id") is None or not bbox or len(bbox) != 4:
        return None
    x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in bbox)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def blur_except(image: np.ndarray, keep: tuple[float, float, float, float] | None) -> np.ndarray:
    """The image pixelated then blurred everywhere but `keep` (faces, plates and text unreadable).

    Args:
        image: a BGR image (not modified).
        keep: a normalised xyxy box left sharp, or None to blur everything.

    Returns:
        A new image of the same size.
    """
    height, width = image.shape[:2]
    block = max(4, round(max(width, height) / BLUR_BLOCKS_ACROSS))
    small = cv2.resize(image, (max(1, width // block), max(1, height // block)), interpolation=cv2.INTER_AREA)
    blurred = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    blurred = cv2.GaussianBlur(blurred, (block | 1, block | 1), 0)
    if keep is not None:
        x0, y0 = int(keep[0] * width), int(keep[1] * height)
        x1, y1 = int(np.ceil(keep[2] * width)), int(np.ceil(keep[3] * height))
        blurred[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    return blurred


def request_ages(requests: list[dict], now: datetime | None = None) -> list[dict]:
    """Each request with its age in days and whether it is past the legal month unanswered.

    Args:
        requests: rows of `Register.rights_requests`.
        now: the time ages count to (default: now).

    Returns:
        The rows with `age_days` (to the answer, or to now while open) and `late` (open past the deadline, or
        answered after it).
    """
    now = now or clock.utc_now()
    out = []
    for row in requests:
        received = datetime.fromisoformat(row["received_utc"])
        until = datetime.fromisoformat(row["answered_utc"]) if row.get("answered_utc") else now
        age_days = (until - received).total_seconds() / 86400
        out.append(row | {"age_days": age_days, "late": age_days > ANSWER_DEADLINE_DAYS})
    return out


# -- the command line's side: `vigie rights ACTION` ---------------------------------------------------------------
ACTION_RIGHTS = {
    "open": Action.RIGHTS_ACCESS,
    "find": Action.RIGHTS_ACCESS,
    "export": Action.RIGHTS_ACCESS,
    "close": Action.RIGHTS_ACCESS,
    "list": Action.RIGHTS_ACCESS,
    "restrict": Action.RIGHTS_RESTRICT,
    "lift": Action.RIGHTS_RESTRICT,
    "erase": Action.RIGHTS_ERASE,
}


def run_command(args: Any, principal: Principal) -> int:
    """Run one `vigie rights` action; the role is checked before the register is opened.

    Args:
        args: the parsed command line (rights_command, db, media_dir and the action's options).
        principal: who acts (must be the DPO).

    Returns:
        The exit code: 0 (errors are raised).
    """
    from runner.register import Register

    require(principal, ACTION_RIGHTS[args.rights_command])
    if getattr(args, "request", None) is not None:
        check_reference(args.request)
    span = _span_of(args)
    with Register(args.db, args.media_dir, create=False) as register:
        return _ACTIONS[args.rights_command](register, principal, args, span)


def _span_of(args: Any) -> TimeSpan | None:
    start, end = getattr(args, "start", None), getattr(args, "end", None)
    if start is None and end is None:
        if getattr(args, "camera", None) and args.rights_command != "find":
            raise UsageError("--camera needs --from and --to")
        return None
    if start is None or end is None:
        raise UsageError("--from and --to go together")
    if not args.camera and args.rights_command != "find":  # acting on every camera at once is never meant
        raise UsageError(f"{args.rights_command} by time needs --camera (or name the alerts with --alert ID)")
    return time_span(args.camera, start, end, args.timezone)


def _cmd_open(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    received = parse_time(args.received, args.timezone, "--received") if args.received else None
    row = register.open_rights_request(
        args.request, by=principal, kind=args.kind, channel=args.channel, received=received
    )
    print(f"request {row['reference']}: {row['kind']}, received {row['received_utc'][:10]}, {row['status']}")
    return 0


def _cmd_find(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    if span is None:
        raise UsageError("find needs --from and --to (and --camera, else every camera)")
    alerts, audit_id = find(register, principal, args.request, span)
    if args.json:
        for alert in alerts:
            print(json.dumps(alert, default=str))
        return 0
    for alert in alerts:
        print(_find_line(alert))
    snapshots = sum(1 for a in alerts if a["snapshot"] and not a["media_purged_utc"])
    decisions = sum(1 for a in alerts if a["decision"])
    print(
        f"{len(alerts)} alert(s), {snapshots} snapshot(s), {decisions} decision(s) on "
        f"{span.camera_id or 'every camera'} from {span.from_utc} to {span.to_utc} "
        f"(request {args.request}, audit row {audit_id})"
    )
    return 0


def _find_line(alert: dict) -> str:
    decision = f"{alert['decision']}, follow-up {alert['follow_up']}" if alert["decision"] else "pending"
    snapshot = "erased" if alert["media_purged_utc"] else ("snapshot" if alert["snapshot"] else "no snapshot")
    restricted = f", restricted ({alert['restricted_by_request']})" if alert["restricted_by_request"] else ""
    return (
        f"alert {alert['id']}  {alert['ts_utc'][:19].replace('T', ' ')} UTC  {alert['camera_id']}  "
        f"{alert['kind']}  {decision}  {snapshot}{restricted}"
    )


def _cmd_export(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    ids = select_alerts(register, args.alert_ids, span)
    summary = export(register, principal, args.request, ids, Path(args.out), blur_all=args.blur_all)
    print(
        f"request {args.request}: {summary['alerts']} alert(s) and {summary['images']} blurred image(s) "
        f"written to {summary['folder']} (audit row {summary['audit_id']})"
    )
    return 0


def _cmd_restrict(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    ids = select_alerts(register, args.alert_ids, span)
    done, audit_id = register.restrict_alerts(args.request, ids, by=principal)
    print(
        f"request {args.request}: {len(done)} alert(s) restricted ({len(ids) - len(done)} already were), "
        f"hidden from operators and analysts, kept for the legal duration (audit row {audit_id})"
    )
    return 0


def _cmd_lift(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    ids = select_alerts(register, args.alert_ids, span)
    done, audit_id = register.lift_restrictions(args.request, ids, by=principal)
    print(f"request {args.request}: restriction lifted on {len(done)} alert(s) (audit row {audit_id})")
    return 0


def _cmd_erase(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    ids = select_alerts(register, args.alert_ids, span)
    erased, deleted = register.erase_media(args.request, ids, by=principal)
    done, audit_id = erased.alert_ids, erased.audit_id
    print(
        f"request {args.request}: media of {len(done)} alert(s) erased ({deleted} file(s) deleted); "
        f"their legal fields and decisions are kept for the legal duration (audit row {audit_id})"
    )
    return 0


def _cmd_close(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    row = register.close_rights_request(args.request, args.status, by=principal)
    age = request_ages([row])[0]
    print(
        f"request {row['reference']}: {row['status']} after {age['age_days']:.0f} day(s)"
        + (f" (past the {ANSWER_DEADLINE_DAYS}-day deadline)" if age["late"] else "")
    )
    return 0


def _cmd_list(register: Register, principal: Principal, args: Any, span: TimeSpan | None) -> int:
    rows = request_ages(register.rights_requests(open_only=not args.all))
    if not rows:
        print("(no open rights request)" if not args.all else "(no rights request)")
        return 0
    for row in rows:
        flag = f"LATE (> {ANSWER_DEADLINE_DAYS} days)" if row["late"] else ""
        print(
            f"{row['reference']:<16} {row['kind']:<13} {row['status']:<9} received {row['received_utc'][:10]}  "
            f"{row['age_days']:5.1f} day(s)  {flag}".rstrip()
        )
    late = sum(1 for r in rows if r["late"] and r["status"] == "open")
    if late:
        print(f"{late} open request(s) past the {ANSWER_DEADLINE_DAYS}-day deadline")
    return 0


_ACTIONS = {
    "open": _cmd_open,
    "find": _cmd_find,
    "export": _cmd_export,
    "restrict": _cmd_restrict,
    "lift": _cmd_lift,
    "erase": _cmd_erase,
    "close": _cmd_close,
    "list": _cmd_list,
}


def _ranges(alerts: list[dict] | list[dict | None]) -> list[list[int]]:
    return id_ranges([a["id"] for a in alerts if a])


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
