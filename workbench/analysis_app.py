"""Analysis dashboards (afterwards): what the alerts were, how operators judged them, per config revision.

Every figure comes from `workbench.register_data` (polars over the register, opened read-only);
this module only lays them out: HTML tables, matplotlib plots rendered to PNG, CSV/Parquet export.
"""

from __future__ import annotations

import getpass
import html
import io
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")  # figures are rendered to PNG for the widgets: no GUI backend in a Voilà kernel

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from runner.core.access import PermissionDenied, Principal, Role, principal_from_env, role_from_env  # noqa: E402
from runner.core.errors import StoreError, UsageError, VigieError  # noqa: E402
from workbench import register_data as rd  # noqa: E402
from workbench._setup_paths import is_database_url  # noqa: E402
from workbench.i18n import add_messages, t  # noqa: E402

HEATMAP_BINS = (32, 18)  # columns, rows: a 16:9 image in cells of about 60 px at 1080p
_LABELLED_COLUMNS = {"kind", "reason", "follow_up", "status"}
_DURATION_COLUMNS = {"median_delay_s", "median_s", "mean_s", "p90_s", "max_s"}
# Roles that see the register's images and identities elsewhere already (the console, rights requests);
# every other one, and a server started without a role, gets the analysts' view.
FULL_VIEW_ROLES = frozenset({Role.OPERATOR, Role.DPO})

add_messages(
    {
        "fr": {
            "analysis.title": "Analyse du registre des alertes",
            "analysis.register": "Registre : {path} — {alerts} alerte(s), {decided} décidée(s)",
            "analysis.include_tests": "Inclure les alertes de test",
            "analysis.cameras": "Caméras",
            "analysis.kinds": "Événements",
            "analysis.revisions": "Révisions",
            "analysis.reload": "Recharger",
            "analysis.tab.overview": "Vue d'ensemble",
            "analysis.tab.validation": "Validation",
            "analysis.tab.heatmap": "Carte de chaleur",
            "analysis.tab.revisions": "Révisions",
            "analysis.tab.export": "Export",
            "analysis.per_kind": "Alertes par événement",
            "analysis.per_camera": "Alertes par caméra",
            "analysis.per_revision": "Alertes par révision de la configuration",
            "analysis.per_hour": "Alertes par heure de la journée ({tz})",
            "analysis.timeline": "Chronologie des alertes",
            "analysis.validation_by": "Taux de validation par événement et par caméra (IC de Wilson {level} %)",
            "analysis.causes": "Causes des fausses alertes (rejets)",
            "analysis.follow_ups": "Suites données",
            "analysis.delays": "Délai de décision (de l'heure de l'événement à la décision)",
            "analysis.site": "Site",
            "analysis.per_operator": "Décisions par opérateur (pseudonyme)",
            "analysis.analyst_view": (
                "Vue analyste : chiffres agrégés, opérateurs pseudonymisés ; ni images, ni notes, ni noms."
            ),
            "analysis.heatmap_camera": "Caméra",
            "analysis.heatmap_background": "Sur la dernière image de la caméra",
            "analysis.heatmap_title": "Où les alertes se produisent — {camera} ({count} alertes)",
            "analysis.revisions_title": "Comparaison des révisions de la configuration",
            "analysis.export_folder": "Dossier",
            "analysis.export_format": "Format",
            "analysis.export_button": "Exporter",
            "analysis.export_help": "Les fichiers sont écrits dans un sous-dossier de {root}.",
            "analysis.exported": "{count} fichier(s) écrit(s) dans {folder}",
            "analysis.empty": "Aucune alerte pour ces filtres.",
            "analysis.col.alerts": "Alertes",
            "analysis.col.kind": "Événement",
            "analysis.col.camera_id": "Caméra",
            "analysis.col.config_revision": "Révision",
            "analysis.col.hour": "Heure",
            "analysis.col.confirmed": "Confirmées",
            "analysis.col.rejected": "Rejetées",
            "analysis.col.pending": "En attente",
            "analysis.col.validation_rate": "Taux de validation",
            "analysis.col.rate_ci": "IC 95 %",
            "analysis.col.median_delay_s": "Délai médian",
            "analysis.col.reason": "Motif",
            "analysis.col.share": "Part",
            "analysis.col.follow_up": "Suite",
            "analysis.col.decisions": "Décisions",
            "analysis.col.median_s": "Médiane",
            "analysis.col.mean_s": "Moyenne",
            "analysis.col.p90_s": "90e centile",
            "analysis.col.max_s": "Max",
            "analysis.col.first_utc": "Première alerte",
            "analysis.col.operator": "Opérateur",
            "analysis.col.site": "Site",
            "analysis.col.last_utc": "Dernière alerte",
            "analysis.axis.alerts": "alertes",
            "analysis.axis.hour": "heure locale",
            "analysis.axis.rate": "taux de validation",
            "analysis.axis.revision": "révision",
        },
        "en": {
            "analysis.title": "Alert register analysis",
            "analysis.register": "Register: {path} — {alerts} alert(s), {decided} decided",
            "analysis.include_tests": "Include test alerts",
            "analysis.cameras": "Cameras",
            "analysis.kinds": "Events",
            "analysis.revisions": "Revisions",
            "analysis.reload": "Reload",
            "analysis.tab.overview": "Overview",
            "analysis.tab.validation": "Validation",
            "analysis.tab.heatmap": "Heatmap",
            "analysis.tab.revisions": "Revisions",
            "analysis.tab.export": "Export",
            "analysis.per_kind": "Alerts per event",
            "analysis.per_camera": "Alerts per camera",
            "analysis.per_revision": "Alerts per config revision",
            "analysis.per_hour": "Alerts per hour of the day ({tz})",
            "analysis.timeline": "Alert timeline",
            "analysis.validation_by": "Validation rate per event and camera (Wilson CI {level} %)",
            "analysis.causes": "Causes of false alerts (rejections)",
            "analysis.follow_ups": "Follow-ups",
            "analysis.delays": "Time to decision (from the event's time to the decision)",
            "analysis.site": "Site",
            "analysis.per_operator": "Decisions per operator (pseudonym)",
            "analysis.analyst_view": (
                "Analyst view: aggregate figures, pseudonymised operators; no images, notes or names."
            ),
            "analysis.heatmap_camera": "Camera",
            "analysis.heatmap_background": "Over the camera's latest image",
            "analysis.heatmap_title": "Where alerts happen — {camera} ({count} alerts)",
            "analysis.revisions_title": "Config revisions compared",
            "analysis.export_folder": "Folder",
            "analysis.export_format": "Format",
            "analysis.export_button": "Export",
            "analysis.export_help": "Files are written to a subfolder of {root}.",
            "analysis.exported": "{count} file(s) written to {folder}",
            "analysis.empty": "No alert for these filters.",
            "analysis.col.alerts": "Alerts",
            "analysis.col.kind": "Event",
            "analysis.col.camera_id": "Camera",
            "analysis.col.config_revision": "Revision",
            "analysis.col.hour": "Hour",
            "analysis.col.confirmed": "Confirmed",
            "analysis.col.rejected": "Rejected",
            "analysis.col.pending": "Pending",
            "analysis.col.validation_rate": "Validation rate",
            "analysis.col.rate_ci": "95 % CI",
            "analysis.col.median_delay_s": "Median delay",
            "analysis.col.reason": "Reason",
            "analysis.col.share": "Share",
            "analysis.col.follow_up": "Follow-up",
            "analysis.col.decisions": "Decisions",
            "analysis.col.median_s": "Median",
            "analysis.col.mean_s": "Mean",
            "analysis.col.p90_s": "90th percentile",
            "analysis.col.max_s": "Max",
            "analysis.col.first_utc": "First alert",
            "analysis.col.operator": "Operator",
            "analysis.col.site": "Site",
            "analysis.col.last_utc": "Last alert",
            "analysis.axis.alerts": "alerts",
            "analysis.axis.hour": "local hour",
            "analysis.axis.rate": "validation rate",
            "analysis.axis.revision": "revision",
        },
    }
)


# -- tables -------------------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    """A delay as people say it: "45 s", "4 min 05 s", "2 h 07 min" (a day is still hours: "30 h 00 min").

    Args:
        seconds: the delay, seconds (a negative one is shown as 0 s).

    Returns:
        The text, rounded to the second below an hour and to the minute above.
    """
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def analyst_only() -> bool:
    """Whether this server's role gets the analysts' view (`FULL_VIEW_ROLES` aside, every role and none).

    Returns:
        True unless $VIGIE_ROLE is operator or dpo.
    """
    try:
        return role_from_env() not in FULL_VIEW_ROLES
    except UsageError:  # an unknown role sees what the least entitled one sees
        return True


def _cell(column: str, value: object, timezone: str) -> str:
    if value is None:
        return "—"
    if column in _LABELLED_COLUMNS:
        return rd.value_label(column, value)
    if column in _DURATION_COLUMNS:
        return format_duration(float(cast(float, value)))
    if column in ("validation_rate", "share"):
        return f"{float(cast(float, value)):.0%}"  # a Float64 column: the row values are untyped
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
    return str(value)


def with_rate_interval(table: pl.DataFrame) -> pl.DataFrame:
    """rate_low / rate_high as one readable "[42 %, 71 %]" column.

    Args:
        table: a table, such as `validation_stats`'; one without rate_low is returned unchanged.

    Returns:
        The table with rate_ci ("—" where nothing was decided) right after validation_rate, in place of
        rate_low and rate_high.
    """
    if "rate_low" not in table.columns:
        return table
    text = [
        "—" if low is None else f"[{low:.0%}, {high:.0%}]"
        for low, high in zip(table["rate_low"].to_list(), table["rate_high"].to_list(), strict=True)
    ]
    position = table.columns.index("validation_rate") + 1
    table = table.drop("rate_low", "rate_high")
    return table.insert_column(position, pl.Series("rate_ci", text, dtype=pl.String))


def html_table(table: pl.DataFrame, timezone: str = rd.DEFAULT_TIMEZONE, css: str = "vigie-table") -> str:
    """A polars table as HTML, headers and register values translated, every cell escaped.

    Args:
        table: the table; rate_low / rate_high are shown as one interval column.
        timezone: the IANA time zone datetime cells are shown in.
        css: the class of the <table> (the style shipped with it is for "vigie-table").

    Returns:
        The HTML: a table with its style, or a "no alert" line when the table is empty.
    """
    table = with_rate_interval(table)
    if table.is_empty():
        return f"<p><i>{html.escape(t('analysis.empty'))}</i></p>"
    head = "".join(f"<th>{html.escape(_header(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(c, v, timezone))}</td>" for c, v in zip(table.columns, row, strict=True))
        + "</tr>"
        for row in table.iter_rows()
    )
    style = "border-collapse:collapse;margin:4px 0 12px 0"
    return (
        f"<table class='{css}' style='{style}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        "<style>.vigie-table td,.vigie-table th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style>"
    )


def _header(column: str) -> str:
    key = f"analysis.col.{column}"
    text = t(key)
    return column if text == key else text


# -- plots --------------------------------------------------------------------------------------
def figure_png(figure: plt.Figure) -> bytes:
    """The figure as PNG bytes (96 dpi, margins trimmed); the figure is closed to free its memory.

    Args:
        figure: a matplotlib figure, closed here.

    Returns:
        The PNG image.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def hourly_profile_figure(per_hour: pl.DataFrame, timezone: str) -> plt.Figure:
    """Bar chart of the alerts per local hour of the day.

    Args:
        per_hour: the table of `alerts_per_hour` (hour, alerts), already in local hours.
        timezone: the time zone named in the title.

    Returns:
        The figure (`plot_widget` renders and closes it).
    """
    figure, axis = plt.subplots(figsize=(7, 2.6))
    axis.bar(per_hour["hour"].to_list(), per_hour["alerts"].to_list(), color="#2f6db5")
    axis.set_xticks(range(0, 24, 2))
    axis.set_xlabel(t("analysis.axis.hour"))
    axis.set_ylabel(t("analysis.axis.alerts"))
    axis.set_title(t("analysis.per_hour", tz=timezone))
    return figure


def timeline_figure(alerts: pl.DataFrame, timezone: str) -> plt.Figure:
    """Alerts per hour (per day beyond three days), stacked by event, in local time.

    Args:
        alerts: the alerts frame (ts_utc in UTC); it may be empty.
        timezone: the IANA time zone the buckets are taken and shown in.

    Returns:
        The figure.
    """
    figure, axis = plt.subplots(figsize=(9, 3))
    span = _span(alerts["ts_utc"]) if alerts.height else None
    every, width_days = ("1d", 1.0) if span is not None and span.total_seconds() > 3 * 86400 else ("1h", 1 / 24)
    local = alerts.with_columns(pl.col("ts_utc").dt.convert_time_zone(timezone).dt.replace_time_zone(None))
    buckets = rd.timeline(local, every=every)
    starts = sorted(set(buckets["bucket"].to_list()))
    bottom = np.zeros(len(starts))
    for kind in sorted(set(buckets["kind"].to_list())):
        counts = dict(buckets.filter(pl.col("kind") == kind).select("bucket", "alerts").iter_rows())
        heights = np.array([counts.get(s, 0) for s in starts], dtype=float)
        axis.bar(
            starts, heights, width=width_days * 0.9, bottom=bottom, align="edge", label=rd.value_label("kind", kind)
        )
        bottom += heights
    if starts:
        axis.set_xlim(mdates.date2num(starts[0]) - width_days, mdates.date2num(starts[-1]) + 2 * width_days)
        axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%d/%m %Hh" if every == "1h" else "%d/%m"))
    axis.set_ylabel(t("analysis.axis.alerts"))
    axis.set_title(t("analysis.timeline") + f" ({timezone})")
    figure.autofmt_xdate()
    return figure


def _span(times: pl.Series) -> timedelta:
    """Time from the first to the last value of a non-empty datetime column."""
    first, last = times.min(), times.max()
    assert isinstance(first, datetime) and isinstance(last, datetime)  # polars types min/max for any dtype
    return last - first


def validation_figure(stats: pl.DataFrame, label_column: str) -> plt.Figure:
    """Validation rate per group with its confidence interval as error bars.

    Args:
        stats: the table of `validation_stats`; groups with no decision are left out.
        label_column: the group column that labels the rows ("kind" values are translated).

    Returns:
        The figure.
    """
    figure, axis = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, stats.height)))
    decided = stats.filter(pl.col("validation_rate").is_not_null())
    labels = [rd.value_label("kind", v) if label_column == "kind" else str(v) for v in decided[label_column].to_list()]
    rates = np.array(decided["validation_rate"].to_list(), dtype=float)
    low = rates - np.array(decided["rate_low"].to_list(), dtype=float)
    high = np.array(decided["rate_high"].to_list(), dtype=float) - rates
    axis.errorbar(rates, range(len(labels)), xerr=[low, high], fmt="o", capsize=4, color="#1e7e34")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlim(0, 1)
    axis.set_xlabel(t("analysis.axis.rate"))
    return figure


def heatmap_figure(alerts: pl.DataFrame, camera: str, background: Path | None) -> plt.Figure:
    """Box centres on a grid over the image; over the camera's latest snapshot when there is one.

    Args:
        alerts: the camera's alerts (box centres cx, cy in 0-1 image coordinates).
        camera: the camera id, for the title.
        background: an image file drawn under the grid, or None for the grid alone.

    Returns:
        The figure.
    """
    counts = rd.heatmap_counts(alerts, *HEATMAP_BINS)
    figure, axis = plt.subplots(figsize=(8, 4.5))
    if background is not None:
        image = plt.imread(background)
        axis.imshow(image, extent=(0, 1, 1, 0), cmap="gray" if image.ndim == 2 else None)
    masked = np.ma.masked_equal(counts, 0)
    shown = axis.imshow(
        masked,
        extent=(0, 1, 1, 0),
        cmap="inferno",
        alpha=0.65 if background is not None else 1.0,
        interpolation="nearest",
        aspect="auto",
        vmin=0,
        vmax=max(1, int(counts.max())),
    )
    figure.colorbar(shown, ax=axis, label=t("analysis.axis.alerts"))
    axis.set_xlim(0, 1)
    axis.set_ylim(1, 0)
    axis.set_title(t("analysis.heatmap_title", camera=camera, count=int(counts.sum())))
    return figure


def revisions_figure(comparison: pl.DataFrame) -> plt.Figure:
    """Alerts per config revision (bars) beside the revisions' validation rates with their intervals.

    Args:
        comparison: the table of `revision_comparison`.

    Returns:
        The figure.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    revisions = [str(r) for r in comparison["config_revision"].to_list()]
    left.bar(revisions, comparison["alerts"].to_list(), color="#2f6db5")
    left.set_xlabel(t("analysis.axis.revision"))
    left.set_ylabel(t("analysis.axis.alerts"))
    rates = comparison["validation_rate"].to_list()
    shown = [i for i, r in enumerate(rates) if r is not None]
    values = np.array([rates[i] for i in shown], dtype=float)
    lows = values - np.array([comparison["rate_low"][i] for i in shown], dtype=float)
    highs = np.array([comparison["rate_high"][i] for i in shown], dtype=float) - values
    right.errorbar([revisions[i] for i in shown], values, yerr=[lows, highs], fmt="o", capsize=4, color="#1e7e34")
    right.set_ylim(0, 1)
    right.set_xlabel(t("analysis.axis.revision"))
    right.set_ylabel(t("analysis.axis.rate"))
    figure.tight_layout()
    return figure


def plot_widget(figure: plt.Figure) -> widgets.Image:
    """The figure as an <img> at its own size (a flex box would stretch it to the page width, blurred).

    Args:
        figure: the figure, rendered to PNG and closed.

    Returns:
        An Image widget of class vigie-plot.
    """
    image = widgets.Image(
        value=figure_png(figure), format="png", layout=widgets.Layout(align_self="flex-start", max_width="100%")
    )
    image.add_class("vigie-plot")
    return image


# -- the dashboard ------------------------------------------------------------------------------
def summary_tables(alerts: pl.DataFrame, timezone: str) -> dict[str, pl.DataFrame]:
    """The tables shown, also the ones exported (with the filtered alerts and the audit log).

    Args:
        alerts: the filtered alerts.
        timezone: the site's IANA time zone, for the hourly profile.

    Returns:
        The tables by name (the exported file names).
    """
    return {
        "by_kind": rd.alert_counts(alerts, "kind"),
        "by_camera": rd.alert_counts(alerts, "camera_id"),
        "by_revision": rd.alert_counts(alerts, "config_revision").sort("config_revision"),
        "by_hour": rd.alerts_per_hour(alerts, timezone),
        "validation": rd.validation_stats(alerts, ["kind", "camera_id"]),
        "rejection_causes": rd.rejection_causes(alerts, ["kind", "camera_id"]),
        "follow_ups": rd.follow_up_counts(alerts, "kind"),
        "decision_delays": rd.decision_delays(alerts, "kind"),
        "by_operator": rd.validation_stats(alerts.filter(pl.col("decision").is_not_null()), "operator"),
        "revisions": rd.revision_comparison(alerts),
    }


class AnalysisDashboard:
    def __init__(
        self, db_path: Path | str | None = None, media: Path | str | None = None, export_root: Path | None = None
    ):
        location = db_path or rd.register_path()
        self.db_path = location if is_database_url(location) else Path(location)  # a URL stays a URL
        self.media_dir = Path(media) if media else rd.media_dir(self.db_path)
        self.export_root = Path(export_root or rd.export_root())
        self.frames: rd.RegisterFrames | None = None
        self.analyst_only = analyst_only()
        self._loading = False
        self.timezone = rd.DEFAULT_TIMEZONE
        self.header = widgets.HTML()
        self.message = widgets.HTML(_dom_classes=["vigie-analysis-message"])
        self._build_filters()
        self._build_tabs()
        self.widget = widgets.VBox(
            [
                widgets.HTML(f"<h2>{html.escape(t('analysis.title'))}</h2>"),
                widgets.HTML(
                    f"<small class='vigie-analyst-view'>{html.escape(t('analysis.analyst_view'))}</small>"
                    if self.analyst_only
                    else ""
                ),
                self.header,
                self.filters,
                self.message,
                self.tabs,
            ],
            _dom_classes=["vigie-analysis"],
        )
        self.reload()

    def _build_filters(self) -> None:
        self.include_tests = widgets.Checkbox(value=True, description=t("analysis.include_tests"), indent=False)
        self.include_tests.add_class("vigie-include-tests")
        wide = {"description_width": "initial"}
        self.site_filter = widgets.Dropdown(description=t("analysis.site"), style=wide)
        self.site_filter.add_class("vigie-site-filter")
        self.site_filter.observe(lambda _: None if self._loading else self._site_changed(), "value")
        self.cameras = widgets.SelectMultiple(description=t("analysis.cameras"), rows=4, style=wide)
        self.kinds = widgets.SelectMultiple(description=t("analysis.kinds"), rows=4, style=wide)
        self.revisions = widgets.SelectMultiple(description=t("analysis.revisions"), rows=4, style=wide)
        self.reload_button = widgets.Button(description=t("analysis.reload"), icon="refresh")
        self.reload_button.add_class("vigie-reload")
        self.reload_button.on_click(lambda _: self.reload())
        for control in (self.include_tests, self.cameras, self.kinds, self.revisions):
            control.observe(lambda _: None if self._loading else self.render(), "value")
        self.filters = widgets.HBox(
            [
                widgets.VBox([self.site_filter, self.include_tests, self.reload_button]),
                self.cameras,
                self.kinds,
                self.revisions,
            ]
        )

    def _build_tabs(self) -> None:
        self.overview = widgets.VBox()
        self.validation = widgets.VBox()
        self.heatmap_camera = widgets.Dropdown(description=t("analysis.heatmap_camera"))
        self.heatmap_camera.add_class("vigie-heatmap-camera")
        self.heatmap_background = widgets.Checkbox(
            value=not self.analyst_only,
            disabled=self.analyst_only,  # a camera image shows people: not for aggregate review
            description=t("analysis.heatmap_background"),
            indent=False,
        )
        self.heatmap_plot = widgets.VBox()
        self.heatmap_camera.observe(lambda _: self._render_heatmap(), "value")
        self.heatmap_background.observe(lambda _: self._render_heatmap(), "value")
        self.revisions_panel = widgets.VBox()
        self.export_folder = widgets.Text(
            value=datetime.now().strftime("export-%Y%m%d-%H%M"), description=t("analysis.export_folder")
        )
        self.export_folder.add_class("vigie-export-folder")
        self.export_format = widgets.Dropdown(options=list(rd.EXPORT_FORMATS), description=t("analysis.export_format"))
        self.export_button = widgets.Button(
            description=t("analysis.export_button"), icon="download", button_style="primary"
        )
        self.export_button.add_class("vigie-export")
        self.export_button.on_click(lambda _: self.export())
        self.export_result = widgets.HTML(_dom_classes=["vigie-export-result"])
        export_panel = widgets.VBox(
            [
                widgets.HTML(html.escape(t("analysis.export_help", root=self.export_root))),
                widgets.HBox([self.export_folder, self.export_format, self.export_button]),
                self.export_result,
            ]
        )
        self.tabs = widgets.Tab(
            children=[
                self.overview,
                self.validation,
                widgets.VBox([widgets.HBox([self.heatmap_camera, self.heatmap_background]), self.heatmap_plot]),
                self.revisions_panel,
                export_panel,
            ]
        )
        for index, key in enumerate(("overview", "validation", "heatmap", "revisions", "export")):
            self.tabs.set_title(index, t(f"analysis.tab.{key}"))

    # data
    def reload(self) -> None:
        try:
            self.frames = rd.load_register(self.db_path)
            if self.analyst_only:
                self.frames = rd.analyst_view(self.frames, rd.pseudonym_key(self.db_path))
        except StoreError as exc:
            self.frames = None
            self.message.value = f"<span style='color:#c0392b'>{html.escape(str(exc))}</span>"
            return
        alerts = self.frames.alerts
        self.header.value = html.escape(
            t(
                "analysis.register",
                path=self.db_path,
                alerts=alerts.height,
                decided=alerts.filter(pl.col("decision").is_not_null()).height,
            )
        )
        self._loading = True  # one render after the filters are reset, not one per filter
        try:
            sites = sorted(set(alerts["site"].to_list()))
            selected = self.site_filter.value if self.site_filter.value in sites else (sites[0] if sites else None)
            self.site_filter.options = sites
            self.site_filter.value = selected
            # Tests count only when they are all there is (a design-phase register); otherwise real use is shown.
            self.include_tests.value = bool(alerts.height) and bool(alerts["is_test"].all())
        finally:
            self._loading = False
        self._site_changed()

    def _site_changed(self) -> None:
        """One site at a time: its revision numbers, cameras and time zone are its own."""
        if self.frames is None:
            return
        site = self.site_filter.value
        alerts = self.frames.alerts.filter(pl.col("site") == site) if site else self.frames.alerts
        self.timezone = rd.site_timezone(site) if site else rd.DEFAULT_TIMEZONE
        self._loading = True
        try:
            self.cameras.options = sorted(set(alerts["camera_id"].to_list()))
            self.kinds.options = [(rd.value_label("kind", k), k) for k in sorted(set(alerts["kind"].to_list()))]
            self.revisions.options = sorted(set(alerts["config_revision"].to_list()))
        finally:
            self._loading = False
        self.render()

    def filtered(self) -> pl.DataFrame:
        """The loaded alerts under the current filters.

        Returns:
            The matching alerts; an empty frame without columns when the register could not be loaded.
        """
        if self.frames is None:
            return pl.DataFrame()
        return rd.filter_alerts(
            self.frames.alerts,
            sites=[self.site_filter.value] if self.site_filter.value else None,
            include_tests=self.include_tests.value,
            cameras=list(self.cameras.value),
            kinds=list(self.kinds.value),
            revisions=list(self.revisions.value),
        )

    # rendering
    def render(self) -> None:
        if self.frames is None:
            return
        alerts = self.filtered()
        tables = summary_tables(alerts, self.timezone)
        self.message.value = "" if alerts.height else f"<i>{html.escape(t('analysis.empty'))}</i>"
        self._render_overview(alerts, tables)
        self._render_validation(tables)
        cameras = sorted(set(alerts["camera_id"].to_list()))
        if list(self.heatmap_camera.options) != cameras:
            selected = self.heatmap_camera.value
            self.heatmap_camera.options = cameras  # ipywidgets 8 leaves the value at None here
            self.heatmap_camera.value = selected if selected in cameras else (cameras[0] if cameras else None)
        self._render_heatmap()
        self._render_revisions(tables)

    def _section(self, title_key: str, body: str, **values: object) -> widgets.HTML:
        return widgets.HTML(f"<h4>{html.escape(t(title_key, **values))}</h4>{body}")

    def _render_overview(self, alerts: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> None:
        children = [
            widgets.HBox(
                [
                    self._section("analysis.per_kind", html_table(tables["by_kind"])),
                    self._section("analysis.per_camera", html_table(tables["by_camera"])),
                    self._section("analysis.per_revision", html_table(tables["by_revision"])),
                ],
                layout=widgets.Layout(gap="24px"),
            )
        ]
        if alerts.height:
            children += [
                plot_widget(hourly_profile_figure(tables["by_hour"], self.timezone)),
                plot_widget(timeline_figure(alerts, self.timezone)),
            ]
        self.overview.children = children

    def _render_validation(self, tables: dict[str, pl.DataFrame]) -> None:
        children = [self._section("analysis.validation_by", html_table(tables["validation"], self.timezone), level=95)]
        by_kind = rd.validation_stats(self.filtered(), "kind")
        if by_kind.filter(pl.col("validation_rate").is_not_null()).height:
            children.append(plot_widget(validation_figure(by_kind, "kind")))
        children += [
            self._section("analysis.causes", html_table(tables["rejection_causes"])),
            self._section("analysis.follow_ups", html_table(tables["follow_ups"])),
            self._section("analysis.delays", html_table(tables["decision_delays"])),
            self._section("analysis.per_operator", html_table(tables["by_operator"])),
        ]
        self.validation.children = children

    def _render_heatmap(self) -> None:
        camera = self.heatmap_camera.value
        if self.frames is None or camera is None:
            self.heatmap_plot.children = []
            return
        alerts = self.filtered().filter(pl.col("camera_id") == camera)
        wanted = self.heatmap_background.value and not self.analyst_only
        background = rd.latest_snapshot(alerts, camera, self.media_dir) if wanted else None
        self.heatmap_plot.children = [plot_widget(heatmap_figure(alerts, camera, background))]

    def _render_revisions(self, tables: dict[str, pl.DataFrame]) -> None:
        comparison = tables["revisions"]
        children = [self._section("analysis.revisions_title", html_table(comparison, self.timezone))]
        if comparison.height:
            children.append(plot_widget(revisions_figure(comparison)))
        self.revisions_panel.children = children

    # export
    def principal(self) -> Principal:
        """Who exports: $VIGIE_USER (serve --user, by default whoever started the server) in $VIGIE_ROLE.

        Returns:
            The principal of the environment the server handed to this app.
        """
        if role_from_env() is None:
            raise PermissionDenied(
                "this dashboard was started without a role "
                "(python -m workbench.serve --role analyst): exports are refused"
            )
        return principal_from_env(user=os.environ.get("VIGIE_USER", "").strip() or getpass.getuser())

    def export(self) -> list[Path]:
        """Export the filtered alerts, the audit log and the summary tables, as the server's analyst.

        The result, or why the export was refused, is shown under the export button; nothing is raised.

        Returns:
            The files written; none when no register is loaded or the export was refused or failed.
        """
        if self.frames is None:
            return []
        alerts = self.filtered()
        tables = {"alerts": alerts, "audit": self.frames.audit, **summary_tables(alerts, self.timezone)}
        try:
            written = rd.export_statistics(
                tables,
                self.export_root,
                self.export_folder.value,
                self.export_format.value,
                by=self.principal(),
                db_path=self.db_path,
                media=self.media_dir,
            )
        except (ValueError, OSError, VigieError) as exc:
            self.export_result.value = f"<span style='color:#c0392b'>{html.escape(str(exc))}</span>"
            return []
        folder = written[0].parent if written else self.export_root
        self.export_result.value = html.escape(t("analysis.exported", count=len(written), folder=folder))
        return written


def show() -> None:
    """The notebook's single call."""
    from IPython.display import display

    display(AnalysisDashboard().widget)
