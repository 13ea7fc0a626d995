"""Operator console (operational phase): pending alerts in real time, human decisions, pause / resume.

`ConsoleModel` holds the logic and talks to the register through `runner.register.Register` only, so
that every decision and every pause is validated and audited by the same code as the CLI's; the
widgets of `OperatorConsole` only collect what the operator chose and show the model's state.
The operator's identity is asked once per session and goes with every decision and pause, with
the role the server was started for ($VIGIE_ROLE, `python -m workbench.serve --role operator`):
the register refuses a decision or a pause from any other role.
"""

from __future__ import annotations

import asyncio
import html
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anywidget
import ipywidgets as widgets
import traitlets

from runner.config.site import PRIORITY_ORDER, alert_priority
from runner.core.access import (
    Action,
    PermissionDenied,
    Principal,
    Role,
    login_from_env,
    parse_role,
    require,
    role_from_env,
)
from runner.core.alerts import FOLLOW_UPS, REJECT_REASONS
from runner.core.errors import StoreError, VigieError
from runner.register import STORAGE_HEALTH_KEYS, Register, iso
from workbench._setup_paths import is_database_url
from workbench.i18n import add_messages, t
from workbench.register_data import (
    DEFAULT_TIMEZONE,
    latest_alert_id,
    media_dir,
    register_path,
    site_timezone,
    value_label,
    zones_dir,
)

POLL_INTERVAL_S = 0.5  # a new alert reaches the page within a second (2 s promised), with room to spare
SEQUENCE_WINDOW_S = 600.0  # earlier alerts on the same subject shown as a sequence: at most 10 min back
SEQUENCE_MAX_IMAGES = 8
MAX_OPERATOR_CHARS = 64
MAX_NOTE_CHARS = 500
ALL_CAMERAS = "*"
NOT_CHOSEN = ""  # a dropdown's placeholder (ipywidgets shows a None option as a blank)
MAX_PAUSE_REASON_CHARS = 300
PRIORITY_COLOURS = {"high": "#c0392b", "medium": "#e67e00", "low": "#5d6d7e"}
KIND_COLOURS = {  # one colour per rule kind, for the chip in the list (unknown kinds grey)
    "fire": "#d35400",
    "weapon": "#8e44ad",
    "person_down": "#c0392b",
    "crowd_density": "#2471a3",
    "crowd_movement": "#148f77",
    "abandoned_object": "#7d6608",
    "zone_intrusion": "#1e8449",
    "wrong_way": "#b9770e",
}

add_messages(
    {
        "fr": {
            "console.title": "Console opérateur — alertes en attente de validation",
            "console.operator_prompt": "Votre identité (nom ou matricule) :",
            "console.operator_start": "Commencer",
            "console.operator_change": "Changer d'opérateur",
            "console.operator_shown": "Opérateur : <b>{name}</b>",
            "console.operator_required": "Indiquez votre identité avant de décider ou de suspendre.",
            "console.operator_invalid": "Identité invalide : 1 à {max} caractères imprimables.",
            "console.hide_tests": "Masquer les alertes de test",
            "console.pending_count": "{count} alerte(s) en attente",
            "console.new_count": " — {count} nouvelle(s)",
            "console.none_pending": "Aucune alerte en attente.",
            "console.test_badge": "TEST — ne pas intervenir",
            "console.no_snapshot": "Pas d'image : {why}",
            "console.sequence": "Séquence du même sujet ({count} images)",
            "console.reason": "Motif du rejet",
            "console.reason_placeholder": "— motif (si rejet) —",
            "console.follow_up": "Suite donnée",
            "console.follow_up_placeholder": "— suite donnée —",
            "console.note": "Note",
            "console.note_placeholder": "Note facultative",
            "console.confirm": "Confirmer",
            "console.reject": "Rejeter",
            "console.reason_needed": "Choisissez le motif du rejet.",
            "console.reason_not_for_confirm": "Un motif ne s'indique qu'en cas de rejet.",
            "console.follow_up_needed": "Choisissez la suite donnée à l'alerte confirmée.",
            "console.note_too_long": "La note dépasse {max} caractères.",
            "console.decided": "Alerte {id} {decision} par {operator}.",
            "console.wrong_role": "Ce serveur n'est pas celui des opérateurs (rôle : {role}) : consultation seule, "
            "décisions et suspensions refusées.",
            "console.control_title": "Suspension de l'analyse",
            "console.scope": "Portée",
            "console.all_cameras": "Toutes les caméras",
            "console.pause": "Suspendre",
            "console.resume": "Reprendre",
            "console.state_running": "en service",
            "console.state_paused": "SUSPENDU (par {actor}, {when})",
            "console.state_all": "Ensemble",
            "console.paused_done": "{scope} : suspension demandée.",
            "console.resumed_done": "{scope} : reprise demandée.",
            "console.health.ok": "flux OK",
            "console.health.degraded": "flux dégradé",
            "console.health.error": "flux en erreur",
            "console.health.ended": "flux terminé",
            "console.health.crashed": "service arrêté brutalement",
            "console.health.damaged": "fichier endommagé",
            "console.register_missing": "Registre introuvable : {error}",
            "console.field.time": "Heure",
            "console.field.camera": "Caméra",
            "console.field.kind": "Événement",
            "console.field.rule": "Règle",
            "console.field.subject": "Sujet",
            "console.field.score": "Score",
            "console.field.revision": "Révision de la config",
            "console.field.priority": "Priorité",
            "console.field.state": "État",
            "console.priority.high": "haute",
            "console.priority.medium": "moyenne",
            "console.priority.low": "basse",
            "console.state_new": "nouvelle",
            "console.taken_by": "pris par {operator}",
            "console.take": "Prendre en charge",
            "console.take_over": "Reprendre à {operator}",
            "console.release": "Libérer",
            "console.taken_done": "Alerte {id} prise en charge par {operator}.",
            "console.released_done": "Alerte {id} libérée.",
            "console.new_high": "Nouvelle alerte prioritaire",
            "console.shortcuts": "Raccourcis : C confirmer · R rejeter · T prendre · N / ↓ suivante · P / ↑ précédente",
            "console.clip": "Séquence vidéo autour de l'alerte ({duration} s)",
            "console.pause_reason": "Motif de la suspension",
            "console.pause_reason_placeholder": "Motif (obligatoire pour toutes les caméras)",
            "console.pause_all_confirm": "Confirmer la suspension de toutes les caméras",
            "console.pause_cancel": "Annuler",
            "console.pause_all_ask": "Suspendre toutes les caméras ? Indiquez le motif puis confirmez.",
            "console.pause_reason_needed": "Indiquez le motif de la suspension de toutes les caméras.",
            "console.pause_cancelled": "Suspension annulée.",
        },
        "en": {
            "console.title": "Operator console — alerts awaiting validation",
            "console.operator_prompt": "Your identity (name or badge number):",
            "console.operator_start": "Start",
            "console.operator_change": "Change operator",
            "console.operator_shown": "Operator: <b>{name}</b>",
            "console.operator_required": "Give your identity before deciding or pausing.",
            "console.operator_invalid": "Invalid identity: 1 to {max} printable characters.",
            "console.hide_tests": "Hide test alerts",
            "console.pending_count": "{count} pending alert(s)",
            "console.new_count": " — {count} new",
            "console.none_pending": "No pending alert.",
            "console.test_badge": "TEST — do not intervene",
            "console.no_snapshot": "No image: {why}",
            "console.sequence": "Sequence of the same subject ({count} images)",
            "console.reason": "Rejection reason",
            "console.reason_placeholder": "— reason (if rejecting) —",
            "console.follow_up": "Follow-up",
            "console.follow_up_placeholder": "— follow-up —",
            "console.note": "Note",
            "console.note_placeholder": "Optional note",
            "console.confirm": "Confirm",
            "console.reject": "Reject",
            "console.reason_needed": "Choose the reason for rejecting.",
            "console.reason_not_for_confirm": "A reason is only given when rejecting.",
            "console.follow_up_needed": "Choose the follow-up of the confirmed alert.",
            "console.note_too_long": "The note is longer than {max} characters.",
            "console.decided": "Alert {id} {decision} by {operator}.",
            "console.wrong_role": "This server is not the operators' one (role: {role}): read only, decisions and "
            "pauses are refused.",
            "console.control_title": "Pausing the analysis",
            "console.scope": "Scope",
            "console.all_cameras": "All cameras",
            "console.pause": "Pause",
            "console.resume": "Resume",
            "console.state_running": "running",
            "console.state_paused": "PAUSED (by {actor}, {when})",
            "console.state_all": "Everything",
            "console.paused_done": "{scope}: pause requested.",
            "console.resumed_done": "{scope}: resume requested.",
            "console.health.ok": "stream OK",
            "console.health.degraded": "stream degraded",
            "console.health.error": "stream error",
            "console.health.ended": "stream ended",
            "console.health.crashed": "service crashed",
            "console.health.damaged": "damaged file",
            "console.register_missing": "Register not found: {error}",
            "console.field.time": "Time",
            "console.field.camera": "Camera",
            "console.field.kind": "Event",
            "console.field.rule": "Rule",
            "console.field.subject": "Subject",
            "console.field.score": "Score",
            "console.field.revision": "Config revision",
            "console.field.priority": "Priority",
            "console.field.state": "State",
            "console.priority.high": "high",
            "console.priority.medium": "medium",
            "console.priority.low": "low",
            "console.state_new": "new",
            "console.taken_by": "taken by {operator}",
            "console.take": "Take",
            "console.take_over": "Take over from {operator}",
            "console.release": "Release",
            "console.taken_done": "Alert {id} taken by {operator}.",
            "console.released_done": "Alert {id} released.",
            "console.new_high": "New high-priority alert",
            "console.shortcuts": "Shortcuts: C confirm · R reject · T take · N / ↓ next · P / ↑ previous",
            "console.clip": "Video around the alert ({duration} s)",
            "console.pause_reason": "Reason for pausing",
            "console.pause_reason_placeholder": "Reason (required for all cameras)",
            "console.pause_all_confirm": "Confirm pausing all cameras",
            "console.pause_cancel": "Cancel",
            "console.pause_all_ask": "Pause all cameras? Give the reason, then confirm.",
            "console.pause_reason_needed": "Give the reason for pausing all cameras.",
            "console.pause_cancelled": "Pause cancelled.",
        },
    }
)


# -- pure logic ---------------------------------------------------------------------------------
def clean_operator(name: str) -> str:
    """The identity recorded with decisions: trimmed, printable, bounded (it lands in the audit log).

    Args:
        name: what the operator typed (None counts as empty).

    Returns:
        The name without surrounding spaces.

    Raises:
        ValueError: an empty name, one longer than MAX_OPERATOR_CHARS, or one with control characters
            (the message is in the interface's language).
    """
    name = (name or "").strip()
    printable = all(unicodedata.category(ch)[0] != "C" for ch in name)
    if not name or len(name) > MAX_OPERATOR_CHARS or not printable:
        raise ValueError(t("console.operator_invalid", max=MAX_OPERATOR_CHARS))
    return name


def decision_request(decision: str, reason: str | None, follow_up: str | None, note: str | None) -> dict:
    """What the form says, checked and shaped for `Register.decide` (which checks it again).

    A rejection without a chosen follow-up records "none" (nothing was done about a false alert);
    a confirmation must say what was done, so its follow-up has to be chosen.

    Args:
        decision: "confirmed" or "rejected".
        reason: the rejection reason chosen; "" (NOT_CHOSEN) or None when none is.
        follow_up: the follow-up chosen; "" (NOT_CHOSEN) or None when none is.
        note: the operator's free text; blank counts as none.

    Returns:
        The keyword arguments decision, reason, follow_up and note of `Register.decide`.

    Raises:
        ValueError: a form that lacks a reason or follow-up, gives a reason to a confirmation, has a note
            over MAX_NOTE_CHARS, or an unknown decision.
    """
    reason, follow_up = reason or None, follow_up or None  # NOT_CHOSEN -> None
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise ValueError(t("console.note_too_long", max=MAX_NOTE_CHARS))
    if decision == "rejected":
        if reason not in REJECT_REASONS:
            raise ValueError(t("console.reason_needed"))
        follow_up = follow_up or "none"
    elif decision == "confirmed":
        if reason:
            raise ValueError(t("console.reason_not_for_confirm"))
        if follow_up not in FOLLOW_UPS:
            raise ValueError(t("console.follow_up_needed"))
    else:
        raise ValueError(f"decision must be 'confirmed' or 'rejected', not {decision!r}")
    return {
        "decision": decision,
        "reason": reason if decision == "rejected" else None,
        "follow_up": follow_up,
        "note": note,
    }


@dataclass
class PollResult:
    new_ids: list[int] = field(default_factory=list)  # pending alerts that appeared
    gone_ids: list[int] = field(default_factory=list)  # no longer pending (decided here or elsewhere, purged)
    new_high_ids: list[int] = field(default_factory=list)  # new since the console opened, high priority
    error: str | None = None


class ConsoleModel:
    """Pending alerts, decisions and pauses over one register, for one operator at a time."""

    def __init__(
        self,
        db_path: Path | str,
        media: Path | str | None = None,
        zones: Path | None = None,
        role: Role | str | None = None,
    ):
        self.db_path = db_path if is_database_url(db_path) else Path(db_path)  # a URL stays a URL
        # The server's role, not something the person at the browser chooses; None refuses every write.
        self.role: Role | None = parse_role(role) if role else role_from_env()
        self.media_dir = Path(media) if media else media_dir(self.db_path)
        self.zones_dir = zones
        self.operator: str | None = None
        self.pending: dict[int, dict] = {}  # alert id -> alert, in id order
        self.last_id = 0
        self._register: Register | None = None
        self._config_signature: tuple = ()
        self._config_camera_ids: set[str] = set()
        self.claims: dict[int, dict] = {}  # alert id -> who holds it (alert_id, operator, taken_utc)
        self._priorities: dict[str, tuple[float | None, dict[str, str]]] = {}  # site -> (config mtime, priorities)

    @property
    def register(self) -> Register:
        """Opened on first use and never created: a wrong VIGIE_DB must not look like a quiet night."""
        if self._register is None:
            self._register = Register(self.db_path, self.media_dir, create=False)
        return self._register

    def close(self) -> None:
        if self._register is not None:
            self._register.close()
            self._register = None

    def set_operator(self, name: str) -> str:
        """Start an operator's session: the identity recorded with the decisions and pauses that follow.

        Args:
            name: what the operator typed (see `clean_operator`).

        Returns:
            The identity recorded.

        Raises:
            ValueError: a name `clean_operator` refuses; the previous operator stays.
        """
        self.operator = clean_operator(name)
        return self.operator

    def _require_operator(self) -> str:
        if not self.operator:
            raise ValueError(t("console.operator_required"))
        return self.operator

    def principal(self) -> Principal:
        """Who acts: the identity typed in, in the server's role (the register checks the role).

        Returns:
            The operator's principal.

        Raises:
            ValueError: no operator has started a session.
            PermissionDenied: the console was started without a role.
        """
        name = login_from_env() or self._require_operator()  # a named login's page acts as that login only
        if self.role is None:
            raise PermissionDenied(
                f"{name}: this console was started without a role "
                "(python -m workbench.serve --role operator): decisions and pauses are refused"
            )
        return Principal(name, self.role)

    # reading
    def poll(self) -> PollResult:
        """New alerts since the last poll (after_id), and the pending ones that were decided meanwhile.

        The first poll reads the pending alerts only and starts after the newest alert, so that a
        register holding months of decided alerts is not read in full when a console opens.

        Returns:
            The ids that became pending and those no longer pending; when the register cannot be read,
            `error` says why (in the interface's language) and no id is reported gone.
        """
        result = PollResult()
        try:
            first_poll = self.last_id == 0 and not self.pending
            if first_poll:
                self.last_id = latest_alert_id(self.db_path)
                fresh = self.register.alerts(status="pending")
            else:
                fresh = self.register.alerts(after_id=self.last_id)
            for alert in fresh:
                self.last_id = max(self.last_id, alert["id"])
                if alert["status"] == "pending":
                    self.pending[alert["id"]] = alert
                    result.new_ids.append(alert["id"])
                    if not first_poll and self.priority(alert) == "high":
                        result.new_high_ids.append(alert["id"])
            still_pending = {a["id"] for a in self.register.alerts(status="pending")} if self.pending else set()
            self.claims = self.register.claims() if self.pending else {}
        except StoreError as exc:
            result.error = t("console.register_missing", error=str(exc))
            return result
        result.gone_ids = [i for i in self.pending if i not in still_pending]
        for alert_id in result.gone_ids:
            del self.pending[alert_id]
        return result

    def visible_pending(self, hide_tests: bool) -> list[dict]:
        """The pending alerts to list, in id order.

        Args:
            hide_tests: leave test alerts out.

        Returns:
            The alerts, as the register returns them.
        """
        return [a for a in self.pending.values() if not (hide_tests and a["is_test"])]

    def ordered_pending(self, hide_tests: bool) -> list[dict]:
        """The pending alerts in the order the operator works through them: priority, then newest first.

        Args:
            hide_tests: leave test alerts out.

        Returns:
            The alerts, high priority first, each priority newest first.
        """
        alerts = sorted(self.visible_pending(hide_tests), key=lambda a: (a["ts_utc"], a["id"]), reverse=True)
        return sorted(alerts, key=lambda a: PRIORITY_ORDER.index(self.priority(a)))  # stable: keeps the time order

    def priority(self, alert: dict) -> str:
        """An alert's priority: its site config's `alert_priorities`, else the default of its kind.

        Args:
            alert: an alert, as the register returns it.

        Returns:
            "high", "medium" or "low".
        """
        return alert_priority(alert["kind"], self._site_priorities(alert["site"]))

    def _site_priorities(self, site: str) -> dict[str, str]:
        """zones/<site>/site.yaml's priorities, re-read only when the file changes (this runs every second)."""
        path = Path(self.zones_dir or zones_dir()) / site / "site.yaml"
        try:
            mtime: float | None = path.stat().st_mtime
        except (OSError, ValueError):
            mtime = None
        cached = self._priorities.get(site)
        if cached is None or cached[0] != mtime:
            priorities: dict[str, str] = {}
            if mtime is not None:
                from runner.config.loading import load_config

                try:
                    priorities = dict(load_config(path).config.alert_priorities)
                except Exception:  # an invalid config belongs to the setup app: the defaults apply meanwhile
                    priorities = {}
            self._priorities[site] = cached = (mtime, priorities)
        return cached[1]

    def holder(self, alert_id: int) -> str | None:
        """Who holds an alert, as of the last poll or this console's own take.

        Args:
            alert_id: the alert.

        Returns:
            The operator's identity, or None when the alert is new (held by nobody).
        """
        claim = self.claims.get(alert_id)
        return claim["operator"] if claim else None

    def clip(self, alert: dict) -> dict | None:
        """The alert's short clip, when it is stored, still kept and intact.

        Args:
            alert: an alert, as the register returns it.

        Returns:
            The clip row (media_type, duration_s, frames...) with `file`, its path; None when there is none to play.
        """
        row = self.register.clip(alert["id"])
        return row if row is not None and row["file"] is not None else None

    def image_sequence(self, alert: dict) -> list[Path]:
        """Snapshots of this alert's subject on its camera, oldest first, ending with the alert's own.

        Args:
            alert: a pending alert, as the register returns it.

        Returns:
            The image files still on disk, from the alerts on the same subject in the SEQUENCE_WINDOW_S
            seconds before it, at most SEQUENCE_MAX_IMAGES; empty when none is left.
        """
        since = datetime.fromisoformat(alert["ts_utc"]) - timedelta(seconds=SEQUENCE_WINDOW_S)
        earlier = [
            a
            for a in self.register.alerts(camera_id=alert["camera_id"], since_utc=iso(since))
            if a["subject"] == alert["subject"] and a["id"] <= alert["id"]
        ]
        paths = [self.register.snapshot_file(a) for a in earlier[-SEQUENCE_MAX_IMAGES:]]
        return [p for p in paths if p is not None and p.is_file()]

    def cameras(self) -> list[str]:
        """Every camera the operator may want to pause: in site configs, alerts, health or pause state.

        Returns:
            The camera ids, sorted; neither the '*' scope nor the register's own storage health rows.
        """
        found = set(self.register.control_state()) | {h["camera_id"] for h in self.register.health()}
        found |= {a["camera_id"] for a in self.pending.values()}
        found |= self._config_cameras()
        found.discard(ALL_CAMERAS)
        found.difference_update(STORAGE_HEALTH_KEYS)  # the register's own health rows are no cameras
        return sorted(found)

    def _config_cameras(self) -> set[str]:
        """Cameras of the site configs, re-read only when a config file changes (this runs every second)."""
        paths = sorted(Path(self.zones_dir or zones_dir()).glob("*/site.yaml"))
        signature = tuple((p, p.stat().st_mtime_ns) for p in paths if p.is_file())
        if signature != self._config_signature:
            self._config_signature, self._config_camera_ids = signature, _config_cameras(paths)
        return self._config_camera_ids

    def control_state(self) -> dict[str, dict]:
        """The pause state, read from the register.

        Returns:
            Scope ('*' or a camera id) -> its control row (paused, actor, changed_utc...); a scope never
            paused is absent.
        """
        return self.register.control_state()

    def health(self) -> list[dict]:
        """The health rows the runner writes, read from the register.

        Returns:
            The rows (camera_id, status, detail, updated_utc), sorted by camera_id.
        """
        return self.register.health()

    # writing (through the register, which validates and audits)
    def decide(
        self,
        alert_id: int,
        decision: str,
        *,
        reason: str | None = None,
        follow_up: str | None = None,
        note: str | None = None,
    ) -> dict:
        """Record the operator's decision on a pending alert, which leaves the pending list.

        Args:
            alert_id: the alert decided on.
            decision: "confirmed" or "rejected".
            reason: the rejection reason chosen, if any (see `decision_request`).
            follow_up: the follow-up chosen, if any.
            note: the operator's free text.

        Returns:
            The decision row the register stored.

        Raises:
            ValueError: no operator, or an incomplete form.
            VigieError: refused by the register (a role that may not decide, an alert decided meanwhile)
                or a register write that failed.
        """
        principal = self.principal()
        request = decision_request(decision, reason, follow_up, note)
        row = self.register.decide(alert_id, by=principal, **request)
        self.pending.pop(alert_id, None)
        self.claims.pop(alert_id, None)
        return row

    def take(self, alert_id: int, *, take_over: bool = False) -> dict:
        """The operator takes a pending alert: the other consoles show who holds it.

        Args:
            alert_id: the pending alert.
            take_over: take it from the operator holding it (audited with their name).

        Returns:
            The claim row (alert_id, operator, taken_utc).

        Raises:
            ValueError: no operator has started a session.
            VigieError: refused by the register (decided meanwhile, held by another without take_over, role).
        """
        claim = self.register.take(alert_id, self.principal(), take_over=take_over)
        self.claims[alert_id] = claim
        return claim

    def release(self, alert_id: int) -> bool:
        """The operator gives back an alert they hold; it is new again for everyone.

        Args:
            alert_id: the alert.

        Returns:
            Whether this operator held it.

        Raises:
            ValueError: no operator has started a session.
            VigieError: refused by the register (role) or a failed write.
        """
        released = self.register.release(alert_id, self.principal())
        if released:
            self.claims.pop(alert_id, None)
        return released

    def set_paused(self, scope: str, paused: bool, reason: str | None = None) -> int:
        """Pause or resume alerting, in the operator's name; pausing every camera needs a reason.

        Args:
            scope: ALL_CAMERAS ('*') or a camera id.
            paused: True to pause, False to resume.
            reason: why, in the operator's words (recorded in the audit row); required to pause everything.

        Returns:
            The id of the audit row written.

        Raises:
            ValueError: no operator has started a session, no reason to pause everything, or one too long.
            VigieError: refused by the register (a role that may not pause), or a failed write.
        """
        principal = require(self.principal(), Action.PAUSE)  # a role that may not pause hears that first
        reason = " ".join((reason or "").split()) or None
        if paused and scope == ALL_CAMERAS and reason is None:
            raise ValueError(t("console.pause_reason_needed"))
        if reason is not None and len(reason) > MAX_PAUSE_REASON_CHARS:
            raise ValueError(t("console.note_too_long", max=MAX_PAUSE_REASON_CHARS))
        return self.register.set_paused(scope, paused, principal, reason)


def _config_cameras(paths: list[Path]) -> set[str]:
    from runner.config.loading import load_config

    cameras: set[str] = set()
    for path in paths:
        try:
            cameras |= {c.id for c in load_config(path).config.cameras}
        except Exception:  # an invalid config belongs to the setup app; the console still works
            continue
    return cameras


def _health_label(status: str) -> str:
    key = f"console.health.{status}"
    text = t(key)
    return status if text == key else text


def local_time(ts_utc: str, timezone: str) -> str:
    """A register time stamp as operators read it: day/month and time of day, in local time.

    Args:
        ts_utc: an ISO 8601 time stamp with its UTC offset, as the register writes them.
        timezone: the IANA time zone to show it in.

    Returns:
        "dd/mm HH:MM:SS".
    """
    return datetime.fromisoformat(ts_utc).astimezone(ZoneInfo(timezone)).strftime("%d/%m %H:%M:%S")


def alert_label(alert: dict, timezone: str) -> str:
    """One line of the pending list: test marker, id, local time, camera and event.

    Args:
        alert: an alert, as the register returns it.
        timezone: the IANA time zone of the alert's site.

    Returns:
        The label.
    """
    test = "[TEST] " if alert["is_test"] else ""
    return (
        f"{test}#{alert['id']}  {local_time(alert['ts_utc'], timezone)}  {alert['camera_id']}  "
        f"{value_label('kind', alert['kind'])}"
    )


# -- widgets ------------------------------------------------------------------------------------
# The alert list as the browser shows it: coloured rows, the new high-priority alerts highlighted with a
# sound (Web Audio, generated in the page: no file, no request), and the keyboard shortcuts. Every row is
# built with textContent (no HTML from the register reaches the page); every action goes back to Python.
_BOARD_ESM = """
const KEYS = {c: "confirm", r: "reject", t: "take", n: "next", j: "next", arrowdown: "next",
              p: "previous", k: "previous", arrowup: "previous"};
function render({ model, el }) {
  el.classList.add("vigie-alert-board");
  const banner = document.createElement("div");
  banner.className = "vigie-new-alert";
  const list = document.createElement("div");
  list.className = "vigie-alert-rows";
  el.append(banner, list);
  let audio = null;
  const unlock = () => {  // browsers let a page make sound once the person has clicked or typed in it
    try { audio = audio || new AudioContext(); audio.resume(); } catch (e) { el.dataset.audioError = String(e); }
  };
  const span = (className, text, colour) => {
    const part = document.createElement("span");
    part.className = className;
    part.textContent = text;
    if (colour) part.style.background = colour;
    return part;
  };
  const draw = () => {
    const rows = model.get("rows"), selected = model.get("value");
    list.replaceChildren(...rows.map((r) => {
      const row = document.createElement("div");
      row.className = `vigie-alert-row vigie-priority-${r.priority}` + (r.fresh ? " vigie-alert-fresh" : "")
        + (r.id === selected ? " vigie-selected" : "");
      row.dataset.alertId = r.id;
      row.style.borderLeftColor = r.priority_colour;
      row.append(span("vigie-priority-chip", r.priority_label, r.priority_colour), span("vigie-alert-head", r.head),
                 span("vigie-kind-chip", r.kind_label, r.kind_colour),
                 span("vigie-alert-state" + (r.held_by ? " vigie-held" : ""), r.state_label));
      row.addEventListener("click", () => { unlock(); model.send({ type: "select", id: r.id }); });
      return row;
    }));
    const fresh = rows.filter((r) => r.fresh);
    banner.textContent = fresh.length ? `${model.get("banner")} : ${fresh.map((r) => r.head).join(" | ")}` : "";
    banner.style.display = fresh.length ? "" : "none";
  };
  const beep = () => {
    el.dataset.alarms = String(Number(el.dataset.alarms || 0) + 1);
    try {
      audio = audio || new AudioContext();
      const now = audio.currentTime;
      for (const [start, hz] of [[0, 880], [0.22, 660], [0.44, 880]]) {
        const tone = audio.createOscillator(), gain = audio.createGain();
        tone.type = "square"; tone.frequency.value = hz; gain.gain.value = 0.12;
        tone.connect(gain).connect(audio.destination);
        tone.start(now + start); tone.stop(now + start + 0.16);
      }
      el.dataset.audioState = audio.state;
    } catch (e) { el.dataset.audioError = String(e); }
  };
  const onKey = (e) => {
    const target = e.target || {}, tag = (target.tagName || "").toLowerCase();
    const typing = ["input", "textarea", "select"].includes(tag) || target.isContentEditable;
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    const action = KEYS[(e.key || "").toLowerCase()];
    if (!action) return;
    e.preventDefault();
    unlock();
    model.send({ type: "key", action });
  };
  document.addEventListener("keydown", onKey);
  model.on("change:rows", draw);
  model.on("change:value", draw);
  model.on("change:alarm", beep);
  draw();
  return () => document.removeEventListener("keydown", onKey);
}
export default { render };
"""
_BOARD_CSS = """
.vigie-alert-rows { max-height: 420px; overflow-y: auto; border: 1px solid #ccd; }
.vigie-alert-row { display: flex; gap: 6px; align-items: center; padding: 3px 6px; cursor: pointer;
  border-left: 6px solid #5d6d7e; border-bottom: 1px solid #eee; font-family: monospace; font-size: 12px; }
.vigie-alert-row.vigie-priority-high { background: #fdecea; }
.vigie-alert-row.vigie-priority-medium { background: #fff4e0; }
.vigie-alert-row.vigie-selected { outline: 2px solid #1f77b4; outline-offset: -2px; font-weight: bold; }
.vigie-alert-row.vigie-alert-fresh { animation: vigie-blink 0.8s ease-in-out infinite alternate; }
@keyframes vigie-blink { from { background: #fdecea; } to { background: #f5b7b1; } }
.vigie-priority-chip, .vigie-kind-chip { color: white; border-radius: 3px; padding: 0 4px; white-space: nowrap; }
.vigie-alert-head { white-space: nowrap; }
.vigie-alert-state { margin-left: auto; color: #555; white-space: nowrap; }
.vigie-alert-state.vigie-held { color: #7d3c98; font-weight: bold; }
.vigie-new-alert { background: #c0392b; color: white; font-weight: bold; padding: 4px 8px; margin-bottom: 4px; }
"""


class AlertBoard(anywidget.AnyWidget):
    """The pending alerts as coloured rows; clicks and keys are sent to Python as messages."""

    _esm = _BOARD_ESM
    _css = _BOARD_CSS
    rows: traitlets.List = traitlets.List().tag(sync=True)  # one dict per row (see OperatorConsole._row)
    value = traitlets.Int(None, allow_none=True).tag(sync=True)  # the selected alert's id
    alarm = traitlets.Int(0).tag(sync=True)  # bumped for each new high-priority alert: the page beeps
    banner = traitlets.Unicode("").tag(sync=True)

    def __init__(self, on_message: Callable[[Mapping[str, Any]], None], **kwargs: Any):
        super().__init__(**kwargs)
        self.on_msg(lambda _widget, content, _buffers: on_message(content))

    @property
    def options(self) -> list[tuple[str, int]]:
        """(label, alert id) of each row, in the order shown.

        Returns:
            The rows' labels and ids.
        """
        return [(row["label"], row["id"]) for row in self.rows]


def _button(label: str, css: str, style: str = "", icon: str = "") -> widgets.Button:
    button = widgets.Button(description=label, button_style=style, icon=icon)
    button.add_class(css)
    return button


class OperatorConsole:
    """The console's widgets over a `ConsoleModel`; `start()` polls the register every second."""

    def __init__(self, model: ConsoleModel):
        self.model = model
        self._timezones: dict[str, str] = {}
        self._shown_id: int | None = None
        self._updating_list = False
        self._sequence: list[bytes] = []
        self._new_since_view = 0
        self._fresh_ids: set[int] = set()  # new high-priority alerts nobody here has looked at yet
        self._task: asyncio.Task | None = None
        self._build_operator_bar()
        self._build_alert_list()
        self._build_detail()
        self._build_control()
        self.message = widgets.HTML(_dom_classes=["vigie-console-message"])
        self.widget = widgets.VBox(
            [
                widgets.HTML(f"<h2>{html.escape(t('console.title'))}</h2>"),
                self.operator_bar,
                self.message,
                widgets.HBox([self.list_box, self.detail_box]),
                self.control_box,
            ],
            _dom_classes=["vigie-console"],
        )
        self._set_operator_enabled(False)
        self._start_login_session()
        if self.model.role is not Role.OPERATOR:
            self._say(t("console.wrong_role", role=self.model.role.value if self.model.role else "-"), error=True)
        self.refresh()

    # construction
    def _build_operator_bar(self) -> None:
        self.operator_input = widgets.Text(
            placeholder="", description=t("console.operator_prompt"), style={"description_width": "initial"}
        )
        self.operator_input.add_class("vigie-operator-input")
        self.operator_start = _button(t("console.operator_start"), "vigie-operator-start", "primary")
        self.operator_shown = widgets.HTML(_dom_classes=["vigie-operator-shown"])
        self.operator_change = _button(t("console.operator_change"), "vigie-operator-change")
        self.operator_start.on_click(lambda _: self._start_session())
        self.operator_input.on_submit(lambda _: self._start_session())
        self.operator_change.on_click(lambda _: self._end_session())
        self.operator_bar = widgets.HBox([self.operator_input, self.operator_start])

    def _build_alert_list(self) -> None:
        self.hide_tests = widgets.Checkbox(value=False, description=t("console.hide_tests"), indent=False)
        self.hide_tests.add_class("vigie-hide-tests")
        self.hide_tests.observe(lambda _: self.refresh(), "value")
        self.counter = widgets.HTML(_dom_classes=["vigie-pending-count"])
        self.alert_list = AlertBoard(self._on_board_message, banner=t("console.new_high"))
        self.alert_list.add_class("vigie-alert-list")
        self.alert_list.layout.width = "540px"
        self.alert_list.observe(lambda _: self._show_selected(), "value")
        self.shortcuts = widgets.HTML(
            f"<small>{html.escape(t('console.shortcuts'))}</small>", _dom_classes=["vigie-shortcuts"]
        )
        self.list_box = widgets.VBox([self.counter, self.hide_tests, self.alert_list, self.shortcuts])

    def _build_detail(self) -> None:
        self.badge = widgets.HTML(_dom_classes=["vigie-test-badge"])
        self.image = widgets.Image(format="jpeg", layout=widgets.Layout(max_width="640px"))
        self.image.add_class("vigie-snapshot")
        self.no_image = widgets.HTML()
        self.sequence_caption = widgets.HTML()
        self.sequence_play = widgets.Play(interval=700, min=0, max=0, step=1)
        self.sequence_slider = widgets.IntSlider(min=0, max=0, readout=False)
        widgets.jslink((self.sequence_play, "value"), (self.sequence_slider, "value"))
        self.sequence_slider.observe(lambda change: self._show_frame(change["new"]), "value")
        self.sequence_box = widgets.HBox([self.sequence_caption, self.sequence_play, self.sequence_slider])
        self.info = widgets.HTML(_dom_classes=["vigie-alert-info"])
        self.holder_info = widgets.HTML(_dom_classes=["vigie-alert-holder"])
        self.take_button = _button(t("console.take"), "vigie-take", "info", "hand-paper-o")
        self.release_button = _button(t("console.release"), "vigie-release", "", "undo")
        self.take_button.on_click(lambda _: self._take())
        self.release_button.on_click(lambda _: self._release())
        self.holder_box = widgets.HBox([self.holder_info, self.take_button, self.release_button])
        self.clip_caption = widgets.HTML()
        self.clip = widgets.Video(format="mp4", autoplay=True, loop=True, controls=True)
        self.clip.add_class("vigie-clip")
        self.clip.layout.max_width = "640px"
        self.clip_box = widgets.VBox([self.clip_caption, self.clip])
        self.reason = widgets.Dropdown(
            options=[(t("console.reason_placeholder"), NOT_CHOSEN)]
            + [(value_label("reason", r), r) for r in REJECT_REASONS],
            description=t("console.reason"),
            style={"description_width": "initial"},
        )
        self.reason.add_class("vigie-reason")
        self.follow_up = widgets.Dropdown(
            options=[(t("console.follow_up_placeholder"), NOT_CHOSEN)]
            + [(value_label("follow_up", f), f) for f in FOLLOW_UPS],
            description=t("console.follow_up"),
            style={"description_width": "initial"},
        )
        self.follow_up.add_class("vigie-follow-up")
        self.note = widgets.Text(placeholder=t("console.note_placeholder"), description=t("console.note"))
        self.note.add_class("vigie-note")
        self.confirm_button = _button(t("console.confirm"), "vigie-confirm", "success", "check")
        self.reject_button = _button(t("console.reject"), "vigie-reject", "danger", "times")
        self.confirm_button.on_click(lambda _: self._decide("confirmed"))
        self.reject_button.on_click(lambda _: self._decide("rejected"))
        self.form = widgets.VBox(
            [self.reason, self.follow_up, self.note, widgets.HBox([self.confirm_button, self.reject_button])]
        )
        self.detail_box = widgets.VBox(
            [
                self.badge,
                self.image,
                self.no_image,
                self.sequence_box,
                self.clip_box,
                self.info,
                self.holder_box,
                self.form,
            ],
            layout=widgets.Layout(margin="0 0 0 16px"),
        )

    def _build_control(self) -> None:
        self.scope = widgets.Dropdown(options=[(t("console.all_cameras"), ALL_CAMERAS)], description=t("console.scope"))
        self.scope.add_class("vigie-scope")
        self.pause_button = _button(t("console.pause"), "vigie-pause", "warning", "pause")
        self.resume_button = _button(t("console.resume"), "vigie-resume", "", "play")
        self.pause_button.on_click(lambda _: self._ask_pause())
        self.resume_button.on_click(lambda _: self._set_paused(False))
        self.pause_reason = widgets.Text(
            placeholder=t("console.pause_reason_placeholder"),
            description=t("console.pause_reason"),
            style={"description_width": "initial"},
            layout=widgets.Layout(width="460px"),
        )
        self.pause_reason.add_class("vigie-pause-reason")
        self.pause_confirm = _button(t("console.pause_all_confirm"), "vigie-pause-confirm", "danger", "pause")
        self.pause_cancel = _button(t("console.pause_cancel"), "vigie-pause-cancel")
        self.pause_confirm.on_click(lambda _: self._set_paused(True))
        self.pause_cancel.on_click(lambda _: self._cancel_pause())
        self.pause_confirm_box = widgets.HBox([self.pause_confirm, self.pause_cancel])
        self.pause_confirm_box.layout.display = "none"
        # Feedback beside the buttons that caused it, not at the top of the page.
        self.control_message = widgets.HTML(_dom_classes=["vigie-control-message"])
        self.control_state = widgets.HTML(_dom_classes=["vigie-control-state"])
        self.control_box = widgets.VBox(
            [
                widgets.HTML(f"<h3>{html.escape(t('console.control_title'))}</h3>"),
                widgets.HBox([self.scope, self.pause_button, self.resume_button, self.control_message]),
                self.pause_reason,
                self.pause_confirm_box,
                self.control_state,
            ]
        )

    # operator session
    def _start_session(self) -> None:
        try:
            name = self.model.set_operator(self.operator_input.value)
        except ValueError as exc:
            self._say(str(exc), error=True)
            return
        self.operator_shown.value = t("console.operator_shown", name=html.escape(name))
        self.operator_bar.children = [self.operator_shown, self.operator_change]
        self._set_operator_enabled(True)
        if self.model.role is Role.OPERATOR:
            self._say("")

    def _start_login_session(self) -> None:
        """A page opened by a named login (workbench/auth.py) acts as that login: no name to type or change."""
        login = login_from_env()
        if login:
            self.operator_input.value = login
            self._start_session()
            self.operator_bar.children = [self.operator_shown]

    def _end_session(self) -> None:
        self.model.operator = None
        self.operator_input.value = ""
        self.operator_bar.children = [self.operator_input, self.operator_start]
        self._set_operator_enabled(False)

    def _set_operator_enabled(self, enabled: bool) -> None:
        enabled = enabled and self.model.role is Role.OPERATOR  # the register would refuse anyway
        controls = (self.confirm_button, self.reject_button, self.pause_button, self.resume_button)
        for control in (*controls, self.take_button, self.release_button, self.pause_confirm):
            control.disabled = not enabled

    # refreshing
    def refresh(self) -> PollResult:
        """One poll of the register, then the list, the detail and the pause state are brought up to date.

        Returns:
            The poll's result; its error, if any, is shown in the message bar and nothing else is redrawn.
        """
        result = self.model.poll()
        if result.error:
            self._say(result.error, error=True)
            return result
        visible = {a["id"] for a in self.model.visible_pending(self.hide_tests.value)}
        self._new_since_view += len(visible.intersection(result.new_ids))
        fresh_high = visible.intersection(result.new_high_ids)
        self._fresh_ids = (self._fresh_ids | fresh_high) & set(self.model.pending)
        if fresh_high:
            self.alert_list.alarm += 1  # the page sounds the alarm once per poll that brought some
        self._refresh_list()
        self._refresh_holder()
        self._refresh_control()
        return result

    def _timezone(self, site: str) -> str:
        if site not in self._timezones:
            self._timezones[site] = site_timezone(site, self.model.zones_dir)
        return self._timezones[site]

    def _refresh_list(self) -> None:
        alerts = self.model.ordered_pending(self.hide_tests.value)
        rows = [self._row(a) for a in alerts]
        if self.alert_list.rows != rows:
            selected = self.alert_list.value
            self._updating_list = True  # the rows change under the selection: not a new selection
            try:
                self.alert_list.rows = rows
                ids = [row["id"] for row in rows]
                self.alert_list.value = selected if selected in ids else (ids[0] if ids else None)
            finally:
                self._updating_list = False
        count = t("console.pending_count", count=len(alerts)) if alerts else t("console.none_pending")
        if self._new_since_view and alerts:
            count += t("console.new_count", count=self._new_since_view)
        self.counter.value = f"<b>{html.escape(count)}</b>"
        self._show_selected()

    def _row(self, alert: dict) -> dict:
        """One row of the list, as the page draws it (plain values: the page sets them as text)."""
        timezone = self._timezone(alert["site"])
        priority = self.model.priority(alert)
        holder = self.model.holder(alert["id"])
        test = "[TEST] " if alert["is_test"] else ""
        return {
            "id": alert["id"],
            "label": alert_label(alert, timezone),
            "head": f"{test}#{alert['id']}  {local_time(alert['ts_utc'], timezone)}  {alert['camera_id']}",
            "kind_label": value_label("kind", alert["kind"]),
            "kind_colour": KIND_COLOURS.get(alert["kind"], "#7f8c8d"),
            "priority": priority,
            "priority_label": t(f"console.priority.{priority}"),
            "priority_colour": PRIORITY_COLOURS[priority],
            "held_by": holder or "",
            "state_label": t("console.taken_by", operator=holder) if holder else t("console.state_new"),
            "fresh": alert["id"] in self._fresh_ids,
        }

    def _on_board_message(self, message: Mapping[str, Any]) -> None:
        """A click on a row or a shortcut key, from the page."""
        if message.get("type") == "select" and isinstance(message.get("id"), int):
            self._select(message["id"])
        elif message.get("type") == "key":
            self.shortcut(str(message.get("action")))

    def shortcut(self, action: str) -> None:
        """What a shortcut key does: confirm, reject, take, next or previous (the page maps the keys).

        Args:
            action: "confirm", "reject", "take", "next" or "previous"; anything else is ignored.
        """
        if action == "confirm":
            self._decide("confirmed")
        elif action == "reject":
            self._decide("rejected")
        elif action == "take":
            self._take()
        elif action in ("next", "previous"):
            ids = [row["id"] for row in self.alert_list.rows]
            if ids:
                current = ids.index(self.alert_list.value) if self.alert_list.value in ids else -1
                step = 1 if action == "next" else -1
                self._select(ids[max(0, min(len(ids) - 1, current + step))])

    def _select(self, alert_id: int) -> None:
        """The operator chose an alert: it is shown, and no longer flashes as new."""
        if alert_id not in self.model.pending:
            return
        self.alert_list.value = alert_id
        if alert_id in self._fresh_ids:
            self._fresh_ids.discard(alert_id)
            self._refresh_list()

    def _show_selected(self) -> None:
        alert_id = self.alert_list.value
        if alert_id == self._shown_id or self._updating_list:
            return
        self._shown_id = alert_id
        self._new_since_view = 0
        alert = self.model.pending.get(alert_id) if alert_id is not None else None
        self.detail_box.layout.visibility = "visible" if alert else "hidden"
        if alert is None:
            return
        self.reason.value, self.follow_up.value, self.note.value = NOT_CHOSEN, NOT_CHOSEN, ""
        self.badge.value = (
            (
                f"<span style='background:#e67e00;color:white;padding:2px 8px;font-weight:bold'>"
                f"{html.escape(t('console.test_badge'))}</span>"
            )
            if alert["is_test"]
            else ""
        )
        self.info.value = self._info_html(alert)
        self._load_sequence(alert)
        self._load_clip(alert)
        self._refresh_holder()

    def _refresh_holder(self) -> None:
        """Who holds the shown alert, and the take / release buttons that fit."""
        alert_id = self.alert_list.value
        holder = self.model.holder(alert_id) if alert_id is not None else None
        me = self.model.operator
        state = t("console.taken_by", operator=holder) if holder else t("console.state_new")
        text = f"<b>{html.escape(t('console.field.state'))} :</b> {html.escape(state)}"
        if self.holder_info.value != text:
            self.holder_info.value = text
        self.take_button.description = (
            t("console.take_over", operator=holder) if holder and holder != me else t("console.take")
        )
        self.take_button.layout.display = "none" if holder and holder == me else ""
        self.release_button.layout.display = "" if holder and holder == me else "none"

    def _load_clip(self, alert: dict) -> None:
        try:
            clip = self.model.clip(alert)
        except VigieError:
            clip = None
        if clip is None:
            self.clip_box.layout.display = "none"
            return
        self.clip.format = clip["media_type"].split("/")[-1]
        self.clip.value = clip["file"].read_bytes()
        self.clip_caption.value = html.escape(t("console.clip", duration=f"{clip['duration_s']:.1f}"))
        self.clip_box.layout.display = ""

    def _info_html(self, alert: dict) -> str:
        rows = [
            ("console.field.time", local_time(alert["ts_utc"], self._timezone(alert["site"]))),
            ("console.field.camera", alert["camera_id"]),
            ("console.field.kind", value_label("kind", alert["kind"])),
            ("console.field.rule", alert["rule_id"]),
            ("console.field.subject", alert["subject"]),
            ("console.field.score", f"{alert['score']:.2f}"),
            ("console.field.priority", t(f"console.priority.{self.model.priority(alert)}")),
            ("console.field.revision", str(alert["config_revision"])),
        ]
        cells = "".join(
            f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(t(k))}</th>"
            f"<td>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<table>{cells}</table>"

    def _load_sequence(self, alert: dict) -> None:
        paths = self.model.image_sequence(alert)
        self._sequence = [p.read_bytes() for p in paths]
        if not self._sequence:
            self.image.layout.display = "none"
            self.no_image.value = html.escape(t("console.no_snapshot", why=alert.get("snapshot_note") or "?"))
            self.sequence_box.layout.display = "none"
            return
        self.image.layout.display = ""
        self.no_image.value = ""
        last = len(self._sequence) - 1
        self.sequence_box.layout.display = "" if last > 0 else "none"
        self.sequence_caption.value = html.escape(t("console.sequence", count=len(self._sequence)))
        self.sequence_play.max = self.sequence_slider.max = last
        self.sequence_slider.value = last  # the alert's own image first
        self._show_frame(last)

    def _show_frame(self, index: int) -> None:
        if 0 <= index < len(self._sequence):
            self.image.value = self._sequence[index]

    def _refresh_control(self) -> None:
        cameras = self.model.cameras()
        options = [(t("console.all_cameras"), ALL_CAMERAS)] + [(c, c) for c in cameras]
        if list(self.scope.options) != options:
            selected = self.scope.value
            self.scope.options = options
            self.scope.value = selected if selected in dict(options).values() else ALL_CAMERAS
        state = self.model.control_state()
        health = {h["camera_id"]: h["status"] for h in self.model.health()}
        chips = [self._scope_state(t("console.state_all"), state.get(ALL_CAMERAS))]
        chips += [self._scope_state(c, state.get(c), health.get(c)) for c in cameras]
        html_text = "<div style='display:flex;flex-wrap:wrap;gap:4px 8px'>" + "".join(chips) + "</div>"
        if self.control_state.value != html_text:
            self.control_state.value = html_text

    def _scope_state(self, name: str, row: dict | None, health: str | None = None) -> str:
        """One camera (or everything) as a chip: running or paused (by whom, when), and its health."""
        paused_row = row if row and row["paused"] else None
        if paused_row is not None:
            when = local_time(paused_row["changed_utc"], DEFAULT_TIMEZONE)
            status = f"<b>{html.escape(t('console.state_paused', actor=paused_row['actor'], when=when))}</b>"
        else:
            status = html.escape(t("console.state_running"))
        suffix = f" · {html.escape(_health_label(health))}" if health else ""
        colours = "background:#fdecea;border-color:#c0392b;color:#c0392b" if paused_row else "background:#f4f6f8"
        return (
            f"<span data-scope='{html.escape(name)}' style='border:1px solid #ccd;border-radius:4px;"
            f"padding:1px 8px;{colours}'>{html.escape(name)} : {status}{suffix}</span>"
        )

    # actions
    def _decide(self, decision: str) -> None:
        alert_id = self.alert_list.value
        if alert_id is None:
            return
        try:
            row = self.model.decide(
                alert_id, decision, reason=self.reason.value, follow_up=self.follow_up.value, note=self.note.value
            )
        except (ValueError, VigieError) as exc:
            self._say(str(exc), error=True)
            return
        self._say(
            t(
                "console.decided",
                id=alert_id,
                decision=value_label("status", decision).lower(),
                operator=row["operator"],
            )
        )
        self.refresh()

    def _take(self) -> None:
        alert_id = self.alert_list.value
        if alert_id is None:
            return
        holder = self.model.holder(alert_id)
        try:
            claim = self.model.take(alert_id, take_over=bool(holder and holder != self.model.operator))
        except (ValueError, VigieError) as exc:
            self._say(str(exc), error=True)
            return
        self._fresh_ids.discard(alert_id)
        self._say(t("console.taken_done", id=alert_id, operator=claim["operator"]))
        self._refresh_list()
        self._refresh_holder()

    def _release(self) -> None:
        alert_id = self.alert_list.value
        if alert_id is None:
            return
        try:
            self.model.release(alert_id)
        except (ValueError, VigieError) as exc:
            self._say(str(exc), error=True)
            return
        self._say(t("console.released_done", id=alert_id))
        self._refresh_list()
        self._refresh_holder()

    def _ask_pause(self) -> None:
        """Pausing every camera is confirmed, with a reason; one camera is paused at once."""
        if self.scope.value == ALL_CAMERAS:
            self.pause_confirm_box.layout.display = ""
            self._say_control(t("console.pause_all_ask"))
            return
        self._set_paused(True)

    def _cancel_pause(self) -> None:
        self.pause_confirm_box.layout.display = "none"
        self._say_control(t("console.pause_cancelled"))

    def _set_paused(self, paused: bool) -> None:
        scope = self.scope.value
        try:
            self.model.set_paused(scope, paused, self.pause_reason.value if paused else None)
        except (ValueError, VigieError) as exc:
            self._say_control(str(exc), error=True)
            return
        name = t("console.all_cameras") if scope == ALL_CAMERAS else scope
        self._say_control(t("console.paused_done" if paused else "console.resumed_done", scope=name))
        self.pause_confirm_box.layout.display = "none"
        if paused:
            self.pause_reason.value = ""
        self._refresh_control()

    def _say_control(self, text: str, error: bool = False) -> None:
        colour = "#c0392b" if error else "#1e7e34"
        self.control_message.value = f"<span style='color:{colour}'>{html.escape(text)}</span>" if text else ""

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#c0392b" if error else "#1e7e34"
        self.message.value = f"<span style='color:{colour}'>{html.escape(text)}</span>" if text else ""

    # real time
    def start(self, interval_s: float = POLL_INTERVAL_S) -> None:
        """Poll on the kernel's event loop (the widgets' thread), so callbacks and polls never interleave.

        Args:
            interval_s: seconds between two polls; a poll already running is kept as it is.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._poll_forever(interval_s))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _poll_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.refresh()
            except Exception as exc:  # keep polling: one bad read must not freeze the console
                self._say(f"{type(exc).__name__}: {exc}", error=True)


def operator_console(
    db_path: str | Path | None = None, media: str | Path | None = None, *, poll: bool = True
) -> OperatorConsole:
    """The console over VIGIE_DB (or `db_path`), polling every second when a kernel loop runs.

    Args:
        db_path: the register's file or `postgresql://` URL; None for VIGIE_DB (default var/vigie.db).
        media: the snapshots folder; None for VIGIE_MEDIA_DIR, else media/ beside the register.
        poll: start polling now (the tests poll by hand).

    Returns:
        The console; its `widget` is what the notebook shows.
    """
    console = OperatorConsole(ConsoleModel(db_path or register_path(), media))
    if poll:
        console.start()
    return console


def show() -> None:
    """The notebook's single call."""
    from IPython.display import display

    display(operator_console().widget)
