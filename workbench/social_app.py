"""Social acceptability dashboard: import survey answers and rights requests, read their indicators.

The logic (parsing, indicators, the synthetic example) is in `workbench.social`; this module lays
it out. Imported files stay in the kernel's memory: the dashboard stores nothing.
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from workbench import social  # noqa: E402
from workbench._setup_paths import register_path  # noqa: E402
from workbench.analysis_app import plot_widget  # noqa: E402
from workbench.i18n import add_messages, t  # noqa: E402

add_messages(
    {
        "fr": {
            "social.title": "Acceptabilité sociale — enquêtes, demandes d'exercice des droits, plaintes",
            "social.survey_upload": "Réponses à l'enquête (CSV)",
            "social.requests_upload": "Demandes et plaintes (CSV)",
            "social.load_example": "Charger l'exemple synthétique",
            "social.example_loaded": (
                "Exemple synthétique chargé ({survey} réponses, {requests} demandes) — données fictives."
            ),
            "social.loaded": "{name} : {rows} ligne(s) importée(s).",
            "social.register_loaded": "{rows} demande(s) lue(s) dans le registre (vigie rights).",
            "social.nothing": (
                "Importez un fichier d'enquête ou de demandes (modèles dans docs/), ou chargez l'exemple."
            ),
            "social.group_by": "Par",
            "social.group.none": "Ensemble",
            "social.group.respondent_type": "Type de répondant",
            "social.group.place": "Lieu",
            "social.period": "Période",
            "social.period.week": "Semaine",
            "social.period.month": "Mois",
            "social.item": "Question",
            "social.survey_title": (
                "Indicateurs de l'enquête (IC {level} % : Wilson pour les parts, t de Student pour les moyennes)"
            ),
            "social.evolution_title": "Évolution — {item}",
            "social.overview_title": "Part d'accord (4 ou 5 sur 5) par question",
            "social.requests_title": "Demandes d'exercice des droits et plaintes (réponse attendue sous {days} jours)",
            "social.requests_plot": "Demandes reçues par période",
            "social.col.item": "Question",
            "social.col.group": "Groupe",
            "social.col.answers": "Réponses",
            "social.col.agree": "Part d'accord",
            "social.col.agree_ci": "IC",
            "social.col.mean": "Moyenne (1-5)",
            "social.col.mean_ci": "IC",
            "social.col.kind": "Type",
            "social.col.requests": "Demandes",
            "social.col.open": "En cours",
            "social.col.median_answer_days": "Délai médian (jours)",
            "social.col.in_time": "Répondues à temps",
            "social.col.in_time_ci": "IC",
            "social.total": "Total",
            "social.axis.agree": "part d'accord",
            "social.axis.requests": "demandes",
        },
        "en": {
            "social.title": "Social acceptability — surveys, rights requests, complaints",
            "social.survey_upload": "Survey answers (CSV)",
            "social.requests_upload": "Requests and complaints (CSV)",
            "social.load_example": "Load the synthetic example",
            "social.example_loaded": (
                "Synthetic example loaded ({survey} answers, {requests} requests) — fictitious data."
            ),
            "social.loaded": "{name}: {rows} row(s) imported.",
            "social.register_loaded": "{rows} request(s) read from the register (vigie rights).",
            "social.nothing": "Import a survey or requests file (templates in docs/), or load the example.",
            "social.group_by": "By",
            "social.group.none": "Everyone",
            "social.group.respondent_type": "Respondent type",
            "social.group.place": "Place",
            "social.period": "Period",
            "social.period.week": "Week",
            "social.period.month": "Month",
            "social.item": "Question",
            "social.survey_title": "Survey indicators ({level} % CI: Wilson for shares, Student's t for means)",
            "social.evolution_title": "Over time — {item}",
            "social.overview_title": "Share agreeing (4 or 5 out of 5) per question",
            "social.requests_title": "Rights requests and complaints (answer due within {days} days)",
            "social.requests_plot": "Requests received per period",
            "social.col.item": "Question",
            "social.col.group": "Group",
            "social.col.answers": "Answers",
            "social.col.agree": "Share agreeing",
            "social.col.agree_ci": "CI",
            "social.col.mean": "Mean (1-5)",
            "social.col.mean_ci": "CI",
            "social.col.kind": "Kind",
            "social.col.requests": "Requests",
            "social.col.open": "Open",
            "social.col.median_answer_days": "Median delay (days)",
            "social.col.in_time": "Answered in time",
            "social.col.in_time_ci": "CI",
            "social.total": "Total",
            "social.axis.agree": "share agreeing",
            "social.axis.requests": "requests",
        },
    }
)

PERIODS = {"week": "1w", "month": "1mo"}


def item_label(item: str) -> str:
    """An item's question as the dashboard shows it.

    Args:
        item: the item's column (q_...).

    Returns:
        The question in the current language, or the column name for an item without a translation.
    """
    key = f"social.item.{item}"
    text = t(key)
    return item if text == key else text


def _label(prefix: str, value: str | None) -> str:
    if value is None:
        return t("social.group.none")
    key = f"{prefix}.{value}"
    text = t(key)
    return value if text == key else text


def _interval(low: float | None, high: float | None, percent: bool) -> str:
    if low is None or high is None:
        return "—"
    return f"[{low:.0%}, {high:.0%}]" if percent else f"[{low:.2f}, {high:.2f}]"


def _table(headers: list[str], rows: list[list[str]], css: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<table class='vigie-table {css}' style='border-collapse:collapse;margin:4px 0 12px 0'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        "<style>.vigie-table td,.vigie-table th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style>"
    )


def survey_table_html(indicators: pl.DataFrame, group_by: str | None) -> str:
    """The survey indicators as an HTML table, every cell escaped.

    Args:
        indicators: the table of `social.survey_indicators`.
        group_by: the column the indicators were grouped by (respondent types are translated), or None.

    Returns:
        The HTML table.
    """
    group_prefix = "social.type" if group_by == "respondent_type" else "social.place"
    rows = [
        [
            item_label(r["item"]),
            _label(group_prefix, r["group"]),
            str(r["answers"]),
            "—" if r["agree_share"] is None else f"{r['agree_share']:.0%}",
            _interval(r["agree_low"], r["agree_high"], True),
            "—" if r["mean"] is None else f"{r['mean']:.2f}",
            _interval(r["mean_low"], r["mean_high"], False),
        ]
        for r in indicators.iter_rows(named=True)
    ]
    headers = [t(f"social.col.{c}") for c in ("item", "group", "answers", "agree", "agree_ci", "mean", "mean_ci")]
    return _table(headers, rows, "vigie-survey-table")


def requests_table_html(indicators: pl.DataFrame) -> str:
    """The request indicators as an HTML table, every cell escaped.

    Args:
        indicators: the table of `social.request_indicators`.

    Returns:
        The HTML table.
    """
    rows = [
        [
            t("social.total") if r["kind"] == "total" else _label("social.kind", r["kind"]),
            str(r["requests"]),
            str(r["open"]),
            "—" if r["median_answer_days"] is None else f"{r['median_answer_days']:.0f}",
            "—" if r["in_time_share"] is None else f"{r['in_time_share']:.0%}",
            _interval(r["in_time_low"], r["in_time_high"], True),
        ]
        for r in indicators.iter_rows(named=True)
    ]
    headers = [
        t(f"social.col.{c}") for c in ("kind", "requests", "open", "median_answer_days", "in_time", "in_time_ci")
    ]
    return _table(headers, rows, "vigie-requests-table")


def _error_bars(values: list, lows: list, highs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    lo = v - np.array([np.nan if x is None else x for x in lows], dtype=float)
    hi = np.array([np.nan if x is None else x for x in highs], dtype=float) - v
    return v, lo, hi


def agreement_overview_figure(indicators: pl.DataFrame) -> plt.Figure:
    """Share agreeing per item, with Wilson intervals: the whole survey at a glance.

    Args:
        indicators: the table of `social.survey_indicators`, without groups.

    Returns:
        The figure.
    """
    figure, axis = plt.subplots(figsize=(7, 0.6 + 0.5 * indicators.height))
    values, low, high = _error_bars(
        indicators["agree_share"].to_list(), indicators["agree_low"].to_list(), indicators["agree_high"].to_list()
    )
    labels = [item_label(i) for i in indicators["item"].to_list()]
    axis.errorbar(values, range(len(labels)), xerr=[low, high], fmt="o", capsize=4, color="#2f6db5")
    axis.set_yticks(range(len(labels)), labels)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel(t("social.axis.agree"))
    axis.set_title(t("social.overview_title"))
    return figure


def evolution_figure(evolution: pl.DataFrame, item: str) -> plt.Figure:
    """Share agreeing with one item per period, with its intervals and the number of answers.

    Args:
        evolution: the table of `social.survey_evolution`.
        item: the item's column, for the title.

    Returns:
        The figure.
    """
    figure, axis = plt.subplots(figsize=(7, 3))
    values, low, high = _error_bars(
        evolution["agree_share"].to_list(), evolution["agree_low"].to_list(), evolution["agree_high"].to_list()
    )
    axis.errorbar(evolution["period"].to_list(), values, yerr=[low, high], fmt="o-", capsize=4, color="#1e7e34")
    for period, value, answers in zip(
        evolution["period"].to_list(), values, evolution["answers"].to_list(), strict=True
    ):
        if not np.isnan(value):
            axis.annotate(f"n={answers}", (period, value), textcoords="offset points", xytext=(6, 6), fontsize="small")
    axis.set_ylim(0, 1)
    axis.set_ylabel(t("social.axis.agree"))
    axis.set_title(t("social.evolution_title", item=item_label(item)))
    figure.autofmt_xdate()
    return figure


def requests_figure(per_period: pl.DataFrame) -> plt.Figure:
    """Requests received per period, stacked by kind.

    Args:
        per_period: the table of `social.requests_per_period`.

    Returns:
        The figure.
    """
    figure, axis = plt.subplots(figsize=(7, 3))
    periods = sorted(set(per_period["period"].to_list()))
    bottom = np.zeros(len(periods))
    for kind in social.REQUEST_KINDS:
        rows = dict(per_period.filter(pl.col("kind") == kind).select("period", "requests").iter_rows())
        counts = np.array([rows.get(p, 0) for p in periods], dtype=float)
        if counts.any():
            axis.bar([p.isoformat() for p in periods], counts, bottom=bottom, label=_label("social.kind", kind))
            bottom += counts
    axis.set_ylabel(t("social.axis.requests"))
    axis.set_title(t("social.requests_plot"))
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.autofmt_xdate()
    return figure


class SocialDashboard:
    def __init__(self, db_path: Path | str | None = None) -> None:
        """The dashboard; the rights requests recorded in the register are loaded at once (CSV import otherwise).

        Args:
            db_path: the register; None for VIGIE_DB (default var/vigie.db).
        """
        self.survey: pl.DataFrame | None = None
        self.requests: pl.DataFrame | None = None
        self.message = widgets.HTML(value=html.escape(t("social.nothing")), _dom_classes=["vigie-social-message"])
        self.survey_upload = widgets.FileUpload(
            accept=".csv", multiple=False, description=t("social.survey_upload"), layout=widgets.Layout(width="auto")
        )
        self.requests_upload = widgets.FileUpload(
            accept=".csv", multiple=False, description=t("social.requests_upload"), layout=widgets.Layout(width="auto")
        )
        self.example_button = widgets.Button(
            description=t("social.load_example"), icon="flask", layout=widgets.Layout(width="auto")
        )
        self.example_button.add_class("vigie-load-example")
        self.survey_upload.observe(lambda _: self._import(self.survey_upload, "survey"), "value")
        self.requests_upload.observe(lambda _: self._import(self.requests_upload, "requests"), "value")
        self.example_button.on_click(lambda _: self.load_example())
        self.group_by = widgets.Dropdown(
            options=[
                (t("social.group.none"), ""),
                (t("social.group.respondent_type"), "respondent_type"),
                (t("social.group.place"), "place"),
            ],
            description=t("social.group_by"),
        )
        self.period = widgets.Dropdown(
            options=[(t("social.period.month"), "month"), (t("social.period.week"), "week")],
            value="week",
            description=t("social.period"),
        )
        self.item = widgets.Dropdown(description=t("social.item"), layout=widgets.Layout(width="420px"))
        for control in (self.group_by, self.period, self.item):
            control.observe(lambda _: self.render(), "value")
        self.survey_panel = widgets.VBox()
        self.requests_panel = widgets.VBox()
        self.widget = widgets.VBox(
            [
                widgets.HTML(f"<h2>{html.escape(t('social.title'))}</h2>"),
                widgets.HBox([self.survey_upload, self.requests_upload, self.example_button]),
                self.message,
                widgets.HBox([self.group_by, self.period, self.item]),
                self.survey_panel,
                self.requests_panel,
            ],
            _dom_classes=["vigie-social"],
        )
        self.load_register_requests(db_path or register_path())

    # loading
    def _import(self, upload: widgets.FileUpload, expected: str) -> None:
        if not upload.value:
            return
        file = upload.value[0]
        try:
            text = bytes(file["content"]).decode("utf-8-sig")
            parse = social.parse_survey if expected == "survey" else social.parse_requests
            frame = parse(text, file["name"])
        except UnicodeDecodeError as exc:
            self._say(f"{file['name']}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8", error=True)
            return
        except social.SocialCsvError as exc:
            self._say(str(exc), error=True)
            return
        self.set_data(**{expected: frame})
        self._say(t("social.loaded", name=file["name"], rows=frame.height))

    def load_register_requests(self, db_path: Path | str) -> bool:
        """Show the rights requests the DPO recorded in the register (`vigie rights`), when it has any.

        Args:
            db_path: the register's file.

        Returns:
            Whether requests were read from it.
        """
        requests = social.requests_from_register(db_path)
        if requests is None or requests.is_empty():
            return False
        self.set_data(requests=requests)
        self._say(t("social.register_loaded", rows=requests.height))
        return True

    def load_example(self) -> None:
        survey, requests = social.example_frames()
        self.set_data(survey=survey, requests=requests)
        self._say(t("social.example_loaded", survey=survey.height, requests=requests.height))

    def set_data(self, survey: pl.DataFrame | None = None, requests: pl.DataFrame | None = None) -> None:
        """Replace the survey, the requests or both, then redraw.

        Args:
            survey: the frame of `social.parse_survey`, or None to keep the current one.
            requests: the frame of `social.parse_requests`, or None to keep the current one.
        """
        if survey is not None:
            self.survey = survey
            items = social.item_columns(survey.columns)
            selected = self.item.value
            self.item.options = [(item_label(i), i) for i in items]
            self.item.value = selected if selected in items else (items[0] if items else None)
        if requests is not None:
            self.requests = requests
        self.render()

    # rendering
    def render(self) -> None:
        self._render_survey()
        self._render_requests()

    def _render_survey(self) -> None:
        if self.survey is None or self.survey.is_empty():
            self.survey_panel.children = []
            return
        group_by = self.group_by.value or None
        indicators = social.survey_indicators(self.survey, group_by)
        children = [
            widgets.HTML(
                f"<h4>{html.escape(t('social.survey_title', level=95))}</h4>" + survey_table_html(indicators, group_by)
            ),
            plot_widget(agreement_overview_figure(social.survey_indicators(self.survey))),
        ]
        if self.item.value:
            evolution = social.survey_evolution(self.survey, self.item.value, PERIODS[self.period.value])
            children.append(plot_widget(evolution_figure(evolution, self.item.value)))
        self.survey_panel.children = children

    def _render_requests(self) -> None:
        if self.requests is None or self.requests.is_empty():
            self.requests_panel.children = []
            return
        title = t("social.requests_title", days=social.ANSWER_DEADLINE_DAYS)
        self.requests_panel.children = [
            widgets.HTML(
                f"<h4>{html.escape(title)}</h4>" + requests_table_html(social.request_indicators(self.requests))
            ),
            plot_widget(requests_figure(social.requests_per_period(self.requests, PERIODS[self.period.value]))),
        ]

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#c0392b" if error else "#1e7e34"
        self.message.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"


def show() -> None:
    """The notebook's single call."""
    from IPython.display import display

    display(SocialDashboard().widget)
