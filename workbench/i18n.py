"""Interface strings of the workbench apps: French by default, English available.

The language comes from `VIGIE_LANG` (fr | en) or `set_language()`. `t("key", **values)` returns the
string in the current language, formatted with `values`. A key missing in English falls back to
French, then to the key itself: a forgotten translation shows as readable text, never as a crash.
Keys are namespaced by app (`setup.`, `canvas.`, `form.`, `tuning.`, `export.`...).
"""

from __future__ import annotations

import os

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"

MESSAGES: dict[str, dict[str, str]] = {"fr": {}, "en": {}}

_current: str | None = None


def language() -> str:
    """The current language: set_language() if called, else VIGIE_LANG, else French.

    Returns:
        "fr" or "en" (an unknown VIGIE_LANG falls back to French).
    """
    if _current is not None:
        return _current
    wanted = os.environ.get("VIGIE_LANG", DEFAULT_LANGUAGE).strip().lower()[:2]
    return wanted if wanted in LANGUAGES else DEFAULT_LANGUAGE


def set_language(lang: str | None) -> None:
    """Force a language for this process (None: back to VIGIE_LANG).

    Args:
        lang: "fr" or "en", or None to follow VIGIE_LANG again.

    Raises:
        ValueError: an unknown language.
    """
    global _current
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
    _current = lang


def add_messages(messages: dict[str, dict[str, str]]) -> None:
    """Add or override strings, {language: {key: text}}.

    Args:
        messages: texts by language then key; a text may hold `str.format` fields such as {count}.

    Raises:
        ValueError: an unknown language (the languages before it are already added).
    """
    for lang, table in messages.items():
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
        MESSAGES[lang].update(table)


def t(key: str, /, **values: object) -> str:
    """The interface string `key` in the current language, formatted with `values`.

    Args:
        key: the message key, such as "console.title".
        **values: the fields formatted into the text; without any, the text is returned as written.

    Returns:
        The text; the French one when English lacks it (or has it empty), the key itself when both do.
    """
    # `key` is positional-only so that a message may itself take a {key} value.
    text = MESSAGES[language()].get(key) or MESSAGES[DEFAULT_LANGUAGE].get(key) or key
    return text.format(**values) if values else text


# -- apps 1-3: camera setup, canvas, forms, tuning, export -----------------------------------------------
add_messages(
    {
        "fr": {
            "canvas.tool.edit": "Sélection",
            "canvas.tool.zone": "Zone",
            "canvas.tool.line": "Ligne",
            "canvas.tool.direction": "Sens autorisé",
            "canvas.tool.mask": "Masque",
            "canvas.tool.calibration": "Calibration",
            "canvas.kind.zone": "zone",
            "canvas.kind.line": "ligne",
            "canvas.kind.mask": "masque",
            "canvas.kind.calibration": "calibration",
            "canvas.bad_key": (
                "identifiant « {key} » invalide : lettres minuscules, chiffres, « - » ou « _ » (63 caractères au plus)"
            ),
            "canvas.calibration_exists": "la calibration existe déjà : déplacez ses points ou supprimez-la",
            "canvas.calibration_name": "la calibration ne se renomme pas",
            "canvas.direction_needs_zone": "cliquez d'abord dans une zone (le sens autorisé appartient à une zone)",
            "canvas.direction_too_short": "flèche trop courte : tracez-la plus longue",
            "canvas.duplicate_key": "l'identifiant « {key} » existe déjà",
            "canvas.duplicate_vertex": "ce sommet existe déjà à cet endroit",
            "canvas.no_such_shape": "aucune forme « {key} »",
            "canvas.no_such_vertex": "la forme « {key} » n'a pas de sommet n°{index}",
            "canvas.nothing_to_undo": "rien à annuler",
            "canvas.pick_drawing_tool": "choisissez un outil de dessin (zone, ligne, masque, calibration)",
            "canvas.too_many_points": "au plus {limit} sommets par forme",
            "canvas.full_line": (
                "une ligne a deux points : déplacez-les, ou choisissez à nouveau l'outil pour une nouvelle ligne"
            ),
            "canvas.full_calibration": "la calibration a déjà ses 4 points : déplacez-les ou supprimez-en un",
            "canvas.unknown_intent": "action de la souris inconnue : {kind}",
            "canvas.unknown_kind": "type de forme inconnu : {kind}",
            "canvas.unknown_tool": "outil inconnu « {tool} » (outils : {tools})",
            "form.bad_yaml": "YAML illisible{where}",
            "form.empty_is_none": "(vide = aucun)",
            "form.empty_placeholder": "vide = aucun",
            "form.unknown_kind": "type de règle inconnu « {kind} » (types : {kinds})",
            "setup.title": "Paramétrage des caméras (phase de conception)",
            "setup.site": "Site",
            "setup.camera": "Caméra",
            "setup.at_s": "à t (s)",
            "setup.grab": "Capturer l'image",
            "setup.preview_masks": "Aperçu des masques appliqués",
            "setup.finish_shape": "Terminer la forme",
            "setup.undo": "Annuler",
            "setup.delete_shape": "Supprimer la forme",
            "setup.new_id": "Nouvel id",
            "setup.rename": "Renommer",
            "setup.clear_direction": "Retirer le sens autorisé",
            "setup.rule_kind": "Type",
            "setup.add_rule": "Ajouter une règle",
            "setup.remove_rule": "Supprimer",
            "setup.add_camera": "Ajouter une caméra",
            "setup.new_camera_id": "Id",
            "setup.new_camera_source": "Source",
            "setup.retention": "Conservation (plafonds légaux : 30 jours pour les images, 365 pour les alertes)",
            "setup.calibration_help": (
                "Position au sol, en mètres, des 4 points de calibration (numérotés sur l'image)."
            ),
            "setup.mouse_help": "Clic : ajouter un sommet (outil de dessin) ou sélectionner (outil Sélection) ; "
            "glisser un sommet : le déplacer ; clic droit ou Suppr sur un sommet : le supprimer ; "
            "clic sur le premier sommet ou Entrée : terminer ; Ctrl+Z : annuler ; "
            "Sens autorisé : deux clics dans la zone. Les points s'aimantent aux sommets et aux bords.",
            "setup.tab.shapes": "Formes",
            "setup.tab.rules": "Règles",
            "setup.tab.calibration": "Calibration",
            "setup.tab.camera": "Caméra",
            "setup.tab.site": "Site",
            "setup.tab.export": "Export",
            "setup.no_camera": "le site n'a aucune caméra",
            "setup.no_site": "aucun site dans {zones} (un dossier par site contenant site.yaml)",
            "setup.unknown_camera": "caméra inconnue « {camera} » (caméras : {cameras})",
            "setup.select_shape_first": "sélectionnez d'abord une forme",
            "setup.site_loaded": "site {site}, révision {revision}",
            "setup.snapshot_ok": "image capturée ({camera})",
            "setup.snapshot_timeout": "aucune image de {source} en {seconds} s",
            "setup.snapshot_too_short": "{source} : aucune image à t ≥ {at_s} s (vidéo plus courte ?)",
            "setup.snapshot_encode": "l'image ne peut pas être encodée en JPEG",
            "setup.valid": "configuration valide",
            "setup.problems": "{count} problème(s) à corriger avant l'export :",
            "export.actor": "Identité",
            "export.actor_placeholder": "nom et service de l'agent",
            "export.show_diff": "Voir les différences",
            "export.export": "Exporter",
            "export.actor_required": "indiquez votre identité : chaque export est tracé avec son auteur",
            "export.actor_too_long": "identité trop longue ({limit} caractères au plus)",
            "export.invalid": "configuration refusée : {count} problème(s), dont {first}",
            "export.revision_exists": "{path} existe déjà (un autre export vient d'avoir lieu ?) : rechargez le site",
            "export.no_change": "aucune modification par rapport à la révision actuelle",
            "export.plan": "Site {site} : révision {previous} → {revision}",
            "export.done": "révision {revision} du site {site} exportée par {actor} : {path} (sha256 {sha256})",
            "tuning.title": "Réglage par rejeu d'enregistrements",
            "tuning.revision": "Révision",
            "tuning.rule": "Règle",
            "tuning.clip": "Vidéo",
            "tuning.clip_placeholder": "chemin d'une vidéo enregistrée",
            "tuning.labels": "Attendus (CSV)",
            "tuning.run": "Lancer",
            "tuning.cancel": "Arrêter",
            "tuning.compare": "Comparer",
            "tuning.thresholds": "Seuils de la règle (modifiez puis relancez)",
            "tuning.comparison": "Comparer deux exécutions (révision A / révision B)",
            "tuning.all_rules": "toutes les règles",
            "tuning.current": "site.yaml (révision {revision})",
            "tuning.expected": "attendu",
            "tuning.busy": "un rejeu est déjà en cours : attendez sa fin ou arrêtez-le",
            "tuning.clip_missing": "vidéo introuvable : {path}",
            "tuning.clip_unreadable": "vidéo illisible : {path}",
            "tuning.labels_missing": "fichier d'attendus introuvable : {path}",
            "tuning.labels_bad": (
                "fichier d'attendus {path} illisible (colonnes clip,event_type,polarity,start_s,end_s) : {error}"
            ),
            "tuning.unknown_rule": "la caméra {camera} n'a pas de règle « {rule} »",
            "tuning.no_config": "choisissez un site et une révision",
            "tuning.no_labels": "pas d'événements attendus pour cette vidéo : seules les alertes sont affichées",
            "tuning.pick_rule": (
                "toutes les règles de la caméra seront rejouées ; choisissez-en une pour régler ses seuils"
            ),
            "tuning.pick_two": "choisissez deux exécutions",
            "tuning.running": "rejeu de {clip} en cours…",
            "tuning.progress": "{frames} / ~{expected} images analysées, {alerts} alerte(s)",
            "tuning.summary": "{alerts} alerte(s), {frames} images analysées en {seconds} s",
            "tuning.state.pending": "en attente",
            "tuning.state.running": "en cours",
            "tuning.state.done": "terminé",
            "tuning.state.cancelled": "arrêté",
            "tuning.state.failed": "échec",
            "tuning.kind": "Type",
            "tuning.alerts": "Alertes",
            "tuning.found": "Trouvés",
            "tuning.missed": "Manqués",
            "tuning.false": "Fausses alertes",
            "tuning.verdict.found": "trouvée",
            "tuning.verdict.false": "fausse alerte",
            "tuning.verdict.uncertain": "incertaine",
            "tuning.verdict.unlabelled": "sans attendu",
            "tuning.different_clips": "les deux exécutions portent sur des vidéos différentes",
            "tuning.config_changes": "Différences de configuration (caméra)",
            "tuning.same_config": "configurations identiques",
        },
        "en": {
            "canvas.tool.edit": "Select",
            "canvas.tool.zone": "Zone",
            "canvas.tool.line": "Line",
            "canvas.tool.direction": "Allowed direction",
            "canvas.tool.mask": "Mask",
            "canvas.tool.calibration": "Calibration",
            "canvas.kind.zone": "zone",
            "canvas.kind.line": "line",
            "canvas.kind.mask": "mask",
            "canvas.kind.calibration": "calibration",
            "canvas.bad_key": "invalid id '{key}': lower-case letters, digits, '-' or '_' (at most 63 characters)",
            "canvas.calibration_exists": "the calibration already exists: move its points or delete it",
            "canvas.calibration_name": "the calibration cannot be renamed",
            "canvas.direction_needs_zone": "click inside a zone first (an allowed direction belongs to a zone)",
            "canvas.direction_too_short": "arrow too short: draw it longer",
            "canvas.duplicate_key": "id '{key}' already exists",
            "canvas.duplicate_vertex": "there is already a vertex there",
            "canvas.no_such_shape": "no shape '{key}'",
            "canvas.no_such_vertex": "shape '{key}' has no vertex #{index}",
            "canvas.nothing_to_undo": "nothing to undo",
            "canvas.pick_drawing_tool": "pick a drawing tool (zone, line, mask, calibration)",
            "canvas.too_many_points": "at most {limit} vertices per shape",
            "canvas.full_line": "a line has two points: move them, or pick the tool again for a new line",
            "canvas.full_calibration": "the calibration already has its 4 points: move them or delete one",
            "canvas.unknown_intent": "unknown mouse action: {kind}",
            "canvas.unknown_kind": "unknown shape kind: {kind}",
            "canvas.unknown_tool": "unknown tool '{tool}' (tools: {tools})",
            "form.bad_yaml": "unreadable YAML{where}",
            "form.empty_is_none": "(empty = none)",
            "form.empty_placeholder": "empty = none",
            "form.unknown_kind": "unknown rule kind '{kind}' (kinds: {kinds})",
            "setup.title": "Camera setup (design phase)",
            "setup.site": "Site",
            "setup.camera": "Camera",
            "setup.at_s": "at t (s)",
            "setup.grab": "Grab snapshot",
            "setup.preview_masks": "Preview masks applied",
            "setup.finish_shape": "Finish shape",
            "setup.undo": "Undo",
            "setup.delete_shape": "Delete shape",
            "setup.new_id": "New id",
            "setup.rename": "Rename",
            "setup.clear_direction": "Remove allowed direction",
            "setup.rule_kind": "Kind",
            "setup.add_rule": "Add rule",
            "setup.remove_rule": "Remove",
            "setup.add_camera": "Add camera",
            "setup.new_camera_id": "Id",
            "setup.new_camera_source": "Source",
            "setup.retention": "Retention (legal caps: 30 days for images, 365 for alerts)",
            "setup.calibration_help": (
                "Ground position, in metres, of the 4 calibration points (numbered on the image)."
            ),
            "setup.mouse_help": "Click: add a vertex (drawing tool) or select (Select tool); drag a vertex: move it; "
            "right-click or Delete on a vertex: delete it; click the first vertex or Enter: finish; "
            "Ctrl+Z: undo; Allowed direction: two clicks in the zone. Points snap to vertices and borders.",
            "setup.tab.shapes": "Shapes",
            "setup.tab.rules": "Rules",
            "setup.tab.calibration": "Calibration",
            "setup.tab.camera": "Camera",
            "setup.tab.site": "Site",
            "setup.tab.export": "Export",
            "setup.no_camera": "the site has no camera",
            "setup.no_site": "no site in {zones} (one folder per site holding site.yaml)",
            "setup.unknown_camera": "unknown camera '{camera}' (cameras: {cameras})",
            "setup.select_shape_first": "select a shape first",
            "setup.site_loaded": "site {site}, revision {revision}",
            "setup.snapshot_ok": "snapshot grabbed ({camera})",
            "setup.snapshot_timeout": "no image from {source} within {seconds} s",
            "setup.snapshot_too_short": "{source}: no image at t >= {at_s} s (clip shorter?)",
            "setup.snapshot_encode": "the image cannot be encoded as JPEG",
            "setup.valid": "valid configuration",
            "setup.problems": "{count} problem(s) to fix before exporting:",
            "export.actor": "Identity",
            "export.actor_placeholder": "name and department of the agent",
            "export.show_diff": "Show differences",
            "export.export": "Export",
            "export.actor_required": "enter your identity: every export is logged with its author",
            "export.actor_too_long": "identity too long (at most {limit} characters)",
            "export.invalid": "configuration refused: {count} problem(s), first {first}",
            "export.revision_exists": "{path} already exists (another export just happened?): reload the site",
            "export.no_change": "no change from the current revision",
            "export.plan": "Site {site}: revision {previous} -> {revision}",
            "export.done": "revision {revision} of site {site} exported by {actor}: {path} (sha256 {sha256})",
            "tuning.title": "Tuning by replaying recordings",
            "tuning.revision": "Revision",
            "tuning.rule": "Rule",
            "tuning.clip": "Clip",
            "tuning.clip_placeholder": "path of a recorded clip",
            "tuning.labels": "Expected (CSV)",
            "tuning.run": "Run",
            "tuning.cancel": "Cancel",
            "tuning.compare": "Compare",
            "tuning.thresholds": "Rule thresholds (change, then run again)",
            "tuning.comparison": "Compare two runs (revision A / revision B)",
            "tuning.all_rules": "all rules",
            "tuning.current": "site.yaml (revision {revision})",
            "tuning.expected": "expected",
            "tuning.busy": "a replay is already running: wait for it or cancel it",
            "tuning.clip_missing": "clip not found: {path}",
            "tuning.clip_unreadable": "cannot read the clip: {path}",
            "tuning.labels_missing": "expected-events file not found: {path}",
            "tuning.labels_bad": (
                "cannot read expected events {path} (columns clip,event_type,polarity,start_s,end_s): {error}"
            ),
            "tuning.unknown_rule": "camera {camera} has no rule '{rule}'",
            "tuning.no_config": "pick a site and a revision",
            "tuning.no_labels": "no expected events for this clip: only the alerts are shown",
            "tuning.pick_rule": "every rule of the camera will be replayed; pick one to tune its thresholds",
            "tuning.pick_two": "pick two runs",
            "tuning.running": "replaying {clip}…",
            "tuning.progress": "{frames} / ~{expected} frames analysed, {alerts} alert(s)",
            "tuning.summary": "{alerts} alert(s), {frames} frames analysed in {seconds} s",
            "tuning.state.pending": "pending",
            "tuning.state.running": "running",
            "tuning.state.done": "finished",
            "tuning.state.cancelled": "cancelled",
            "tuning.state.failed": "failed",
            "tuning.kind": "Kind",
            "tuning.alerts": "Alerts",
            "tuning.found": "Found",
            "tuning.missed": "Missed",
            "tuning.false": "False alerts",
            "tuning.verdict.found": "found",
            "tuning.verdict.false": "false alert",
            "tuning.verdict.uncertain": "uncertain",
            "tuning.verdict.unlabelled": "no expected events",
            "tuning.different_clips": "the two runs replayed different clips",
            "tuning.config_changes": "Configuration differences (camera)",
            "tuning.same_config": "identical configurations",
        },
    }
)
