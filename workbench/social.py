"""Social acceptability: survey answers, rights requests and complaints, and their indicators.

Two CSV files, documented column by column in docs/social_acceptability.md (templates beside it):

- survey answers, one row per respondent: respondent_id, date, place, respondent_type, then one
  column per Likert item, named q_<item>, holding 1 (strongly disagree) to 5 (strongly agree) or
  nothing (no answer);
- rights requests and complaints, one row per request: request_id, date_received, kind, channel,
  status, date_answered. Where the DPO records them with `vigie rights`, they are read from the register
  instead (`requests_from_register`); the CSV stays for requests kept elsewhere.

Indicators carry confidence intervals, because a survey of a few hundred people moves by several
points from one sample to the next: the share agreeing (4 or 5) with a Wilson interval, the mean
answer with a Student t interval, and the share of requests answered within the legal month.

    python -m workbench.social example SURVEY_CSV [REQUESTS_CSV] [--seed N] [--respondents N]
    python -m workbench.social check CSV

`example` writes a synthetic, plausible example (generated here, never real answers).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from runner.core.errors import StoreError
from runner.register.backend import database_errors, parse_target
from runner.register.rights import (  # one home for the rights requests' vocabulary: the register's
    ANSWER_DEADLINE_DAYS,
    REQUEST_CHANNELS,
    REQUEST_KINDS,
    REQUEST_STATUSES,
)
from workbench.i18n import add_messages
from workbench.stats import mean_t_interval, wilson_interval

LIKERT_MIN, LIKERT_MAX = 1, 5
AGREE_FROM = 4  # "agree" and "strongly agree"
ITEM_PREFIX = "q_"
SURVEY_COLUMNS = ("respondent_id", "date", "place", "respondent_type")
STANDARD_ITEMS = ("q_informed", "q_feel_safer", "q_privacy_respected", "q_trust_use", "q_support_continuation")
RESPONDENT_TYPES = ("resident", "visitor", "worker", "trader", "other")
REQUEST_COLUMNS = ("request_id", "date_received", "kind", "channel", "status", "date_answered")
EXAMPLE_KINDS = ("information", "access", "objection", "erasure", "complaint")  # what the synthetic example draws
CLOSED_STATUSES = ("answered", "rejected")  # a reply was sent: date_answered is required
MAX_CSV_BYTES = 20_000_000

add_messages(
    {
        "fr": {
            "social.item.q_informed": "J'ai été informé·e de l'expérimentation",
            "social.item.q_feel_safer": "Je me sens plus en sécurité grâce au dispositif",
            "social.item.q_privacy_respected": "Le dispositif respecte ma vie privée",
            "social.item.q_trust_use": "J'ai confiance dans l'usage fait des images",
            "social.item.q_support_continuation": "Je suis favorable à la poursuite du dispositif",
            "social.type.resident": "Habitant·e",
            "social.type.visitor": "Visiteur·se / festivalier·e",
            "social.type.worker": "Professionnel·le sur place",
            "social.type.trader": "Commerçant·e",
            "social.type.other": "Autre",
            "social.kind.information": "Demande d'information",
            "social.kind.access": "Droit d'accès",
            "social.kind.objection": "Droit d'opposition",
            "social.kind.erasure": "Droit à l'effacement",
            "social.kind.rectification": "Droit de rectification",
            "social.kind.restriction": "Droit à la limitation",
            "social.kind.complaint": "Plainte / réclamation",
        },
        "en": {
            "social.item.q_informed": "I was informed about the experiment",
            "social.item.q_feel_safer": "I feel safer thanks to the system",
            "social.item.q_privacy_respected": "The system respects my privacy",
            "social.item.q_trust_use": "I trust the way the images are used",
            "social.item.q_support_continuation": "I am in favour of continuing the system",
            "social.type.resident": "Resident",
            "social.type.visitor": "Visitor / festival-goer",
            "social.type.worker": "Worker on site",
            "social.type.trader": "Shopkeeper",
            "social.type.other": "Other",
            "social.kind.information": "Information request",
            "social.kind.access": "Right of access",
            "social.kind.objection": "Right to object",
            "social.kind.erasure": "Right to erasure",
            "social.kind.rectification": "Right to rectification",
            "social.kind.restriction": "Right to restriction",
            "social.kind.complaint": "Complaint",
        },
    }
)


class SocialCsvError(ValueError):
    """One line that names the file, the row and the column at fault."""


# -- reading ------------------------------------------------------------------------------------
def _rows(text: str, source: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs; the delimiter is ',' or ';' (French spreadsheets)."""
    text = text.lstrip("\ufeff")
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise SocialCsvError(f"{source}: the file is empty (a header row is required)") from None
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise SocialCsvError(f"{source}: row 1: column {duplicates[0]!r} appears twice")
    rows = []
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(header):
            raise SocialCsvError(f"{source}: row {line}: {len(cells)} values for {len(header)} columns")
        rows.append((line, {h: c.strip() for h, c in zip(header, cells, strict=True)}))
    return header, rows


def _require_columns(header: list[str], required: tuple[str, ...], source: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise SocialCsvError(f"{source}: row 1: missing column {missing[0]!r} (required: {', '.join(required)})")


def _date(value: str, source: str, line: int, column: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SocialCsvError(f"{source}: row {line}, column {column}: {value!r} is not a date (YYYY-MM-DD)") from None


def _choice(value: str, allowed: tuple[str, ...], source: str, line: int, column: str) -> str:
    if value not in allowed:
        raise SocialCsvError(f"{source}: row {line}, column {column}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _text(value: str, source: str, line: int, column: str) -> str:
    if not value:
        raise SocialCsvError(f"{source}: row {line}, column {column}: a value is required")
    return value


def _likert(value: str, source: str, line: int, column: str) -> int | None:
    if value == "":
        return None  # no answer
    if value not in {str(v) for v in range(LIKERT_MIN, LIKERT_MAX + 1)}:
        raise SocialCsvError(
            f"{source}: row {line}, column {column}: {value!r} is not an answer "
            f"({LIKERT_MIN} to {LIKERT_MAX}, or empty for no answer)"
        )
    return int(value)


def _unique(value: str, seen: dict[str, int], source: str, line: int, column: str) -> str:
    if value in seen:
        raise SocialCsvError(f"{source}: row {line}, column {column}: {value!r} already used on row {seen[value]}")
    seen[value] = line
    return value


def item_columns(header: list[str] | tuple[str, ...]) -> list[str]:
    """The Likert item columns of a header (their names start with q_), in order.

    Args:
        header: column names.

    Returns:
        The item columns.
    """
    return [h for h in header if h.startswith(ITEM_PREFIX)]


def parse_survey(text: str, source: str = "<survey>") -> pl.DataFrame:
    """Survey answers from CSV text, checked row by row.

    Args:
        text: the CSV (delimited by ',' or ';', a byte order mark allowed).
        source: the file's name in error messages.

    Returns:
        respondent_id, date (Date), place, respondent_type, then one Int8 column per item (null: no answer).

    Raises:
        SocialCsvError: the first problem found, naming the row and column.
    """
    header, rows = _rows(text, source)
    _require_columns(header, SURVEY_COLUMNS, source)
    items = item_columns(header)
    if not items:
        raise SocialCsvError(f"{source}: row 1: no Likert item column (their names start with {ITEM_PREFIX!r})")
    unknown = [h for h in header if h not in SURVEY_COLUMNS and h not in items]
    if unknown:
        raise SocialCsvError(
            f"{source}: row 1: unknown column {unknown[0]!r} (Likert items start with {ITEM_PREFIX!r})"
        )
    seen: dict[str, int] = {}
    records = []
    for line, row in rows:
        record = {
            "respondent_id": _unique(
                _text(row["respondent_id"], source, line, "respondent_id"), seen, source, line, "respondent_id"
            ),
            "date": _date(row["date"], source, line, "date"),
            "place": _text(row["place"], source, line, "place"),
            "respondent_type": _choice(row["respondent_type"], RESPONDENT_TYPES, source, line, "respondent_type"),
        }
        record.update({item: _likert(row[item], source, line, item) for item in items})
        records.append(record)
    schema = {
        "respondent_id": pl.String,
        "date": pl.Date,
        "place": pl.String,
        "respondent_type": pl.String,
        **{item: pl.Int8 for item in items},
    }
    return pl.DataFrame(records, schema=schema, orient="row")


def parse_requests(text: str, source: str = "<requests>") -> pl.DataFrame:
    """Rights requests and complaints from CSV text, checked row by row.

    Args:
        text: the CSV (delimited by ',' or ';', a byte order mark allowed).
        source: the file's name in error messages.

    Returns:
        The REQUEST_COLUMNS (dates as Date; date_answered null while unanswered), then answer_days, the days
        from receipt to answer (null while unanswered).

    Raises:
        SocialCsvError: the first problem found, naming the row and column.
    """
    header, rows = _rows(text, source)
    _require_columns(header, REQUEST_COLUMNS, source)
    unknown = [h for h in header if h not in REQUEST_COLUMNS]
    if unknown:
        raise SocialCsvError(f"{source}: row 1: unknown column {unknown[0]!r} (expected: {', '.join(REQUEST_COLUMNS)})")
    seen: dict[str, int] = {}
    records = []
    for line, row in rows:
        received = _date(row["date_received"], source, line, "date_received")
        status = _choice(row["status"], REQUEST_STATUSES, source, line, "status")
        answered = _date(row["date_answered"], source, line, "date_answered") if row["date_answered"] else None
        if status in CLOSED_STATUSES and answered is None:
            raise SocialCsvError(f"{source}: row {line}, column date_answered: required when status is {status}")
        if answered is not None and answered < received:
            raise SocialCsvError(
                f"{source}: row {line}, column date_answered: {answered} is before date_received {received}"
            )
        records.append(
            {
                "request_id": _unique(
                    _text(row["request_id"], source, line, "request_id"), seen, source, line, "request_id"
                ),
                "date_received": received,
                "kind": _choice(row["kind"], REQUEST_KINDS, source, line, "kind"),
                "channel": _choice(row["channel"], REQUEST_CHANNELS, source, line, "channel"),
                "status": status,
                "date_answered": answered,
            }
        )
    schema = {
        "request_id": pl.String,
        "date_received": pl.Date,
        "kind": pl.String,
        "channel": pl.String,
        "status": pl.String,
        "date_answered": pl.Date,
    }
    return pl.DataFrame(records, schema=schema, orient="row").with_columns(
        (pl.col("date_answered") - pl.col("date_received")).dt.total_days().alias("answer_days")
    )


def requests_from_register(db_path: str | Path) -> pl.DataFrame | None:
    """The rights requests the DPO recorded in the register (`vigie rights`), shaped like `parse_requests`.

    Only the reference, the dates, the kind, the channel and the status are read: nothing about the persons.

    Args:
        db_path: the register's file, or its `postgresql://` URL.

    Returns:
        The frame, or None when the register is missing, unreadable or older than the rights requests
        (the CSV import is then the way in).
    """
    from workbench.register_data import connect_readonly, has_table

    try:
        conn = connect_readonly(db_path)
    except StoreError:
        return None
    try:
        if not has_table(conn, "rights_requests"):
            return None
        rows = conn.execute(
            "SELECT reference, received_utc, kind, channel, status, answered_utc FROM rights_requests "
            "ORDER BY received_utc, reference"
        ).fetchall()
    except database_errors():
        return None
    finally:
        conn.close()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REQUEST_COLUMNS)
    for reference, received, kind, channel, status, answered in rows:  # dates in UTC, as the register keeps them
        writer.writerow([reference, received[:10], kind, channel, status, (answered or "")[:10]])
    return parse_requests(buffer.getvalue(), f"register {parse_target(db_path).display}")


def read_csv_file(path: str | Path) -> tuple[str, pl.DataFrame]:
    """("survey" | "requests", frame), the kind told by the header.

    Args:
        path: a UTF-8 CSV file of at most MAX_CSV_BYTES.

    Returns:
        The kind of file and its frame (see `parse_survey` and `parse_requests`).

    Raises:
        SocialCsvError: a missing, too large or non-UTF-8 file, or an invalid CSV.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CSV_BYTES:
            raise SocialCsvError(f"{path}: larger than {MAX_CSV_BYTES} bytes")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SocialCsvError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise SocialCsvError(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    return parse_any(text, str(path))


def parse_any(text: str, source: str) -> tuple[str, pl.DataFrame]:
    """A survey or a requests CSV, told apart by "request_id" in its header line.

    Args:
        text: the CSV.
        source: the file's name in error messages.

    Returns:
        "survey" or "requests", and the frame.

    Raises:
        SocialCsvError: an invalid CSV.
    """
    header_line = text.lstrip("\ufeff").split("\n", 1)[0]
    if "request_id" in header_line:
        return "requests", parse_requests(text, source)
    return "survey", parse_survey(text, source)


# -- indicators ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemIndicator:
    item: str
    group: str | None
    answers: int
    agree_share: float | None
    agree_low: float | None
    agree_high: float | None
    mean: float | None
    mean_low: float | None
    mean_high: float | None


def item_indicator(
    values: list[int | None], item: str, group: str | None = None, confidence: float = 0.95
) -> ItemIndicator:
    """The indicators of one Likert item over a set of answers.

    Args:
        values: the answers, 1 to 5; None for no answer.
        item: the item's column.
        group: the group's value, or None for every respondent.
        confidence: the intervals' level, between 0 and 1.

    Returns:
        The number of answers, the share agreeing (AGREE_FROM or more) with its Wilson interval and the mean
        answer with its t interval; None where there is no answer (bounds: fewer than two for the mean).
    """
    answered = [v for v in values if v is not None]
    agree = wilson_interval(sum(1 for v in answered if v >= AGREE_FROM), len(answered), confidence)
    mean = mean_t_interval([float(v) for v in answered], confidence)
    return ItemIndicator(
        item, group, len(answered), agree.value, agree.low, agree.high, mean.value, mean.low, mean.high
    )


def survey_indicators(survey: pl.DataFrame, group_by: str | None = None, confidence: float = 0.95) -> pl.DataFrame:
    """One row per item (and group): answers, share agreeing and mean answer, each with its interval.

    Args:
        survey: the frame of `parse_survey`.
        group_by: a column to split the respondents by (respondent_type, place), or None for everyone.
        confidence: the intervals' level, between 0 and 1.

    Returns:
        item, group (null without group_by), answers, agree_share, agree_low, agree_high, mean, mean_low and
        mean_high; groups in the order of their text, items in column order.
    """
    rows = []
    groups = (
        [(None, survey)]
        if group_by is None
        else [(str(key[0]), part) for key, part in sorted(survey.group_by([group_by]), key=lambda kv: str(kv[0][0]))]
    )
    for group, part in groups:
        for item in item_columns(survey.columns):
            rows.append(item_indicator(part[item].to_list(), item, group, confidence).__dict__)
    return _indicator_frame(rows)


def _indicator_frame(rows: list[dict]) -> pl.DataFrame:
    schema = {
        "item": pl.String,
        "group": pl.String,
        "answers": pl.Int64,
        "agree_share": pl.Float64,
        "agree_low": pl.Float64,
        "agree_high": pl.Float64,
        "mean": pl.Float64,
        "mean_low": pl.Float64,
        "mean_high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def survey_evolution(survey: pl.DataFrame, item: str, every: str = "1mo", confidence: float = 0.95) -> pl.DataFrame:
    """The item's indicators per period ("1w" weeks from Monday, "1mo" calendar months), oldest first.

    Args:
        survey: the frame of `parse_survey`.
        item: the item's column.
        every: the period, as a polars duration.
        confidence: the intervals' level, between 0 and 1.

    Returns:
        period (its first day), then the columns of `survey_indicators` but group; periods without any
        respondent are absent.
    """
    periods = survey.with_columns(pl.col("date").dt.truncate(every).alias("period"))
    rows = []
    for (period,), part in sorted(periods.group_by(["period"]), key=lambda kv: kv[0][0]):
        row = item_indicator(part[item].to_list(), item, None, confidence).__dict__
        rows.append({"period": period, **row})
    frame = _indicator_frame([{k: v for k, v in r.items() if k != "period"} for r in rows])
    return frame.insert_column(0, pl.Series("period", [r["period"] for r in rows], dtype=pl.Date)).drop("group")


def request_indicators(requests: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Per kind of request and in total: how many, still open, median days to answer, share answered in time.

    Args:
        requests: the frame of `parse_requests`.
        confidence: the level of the in-time share's Wilson interval, between 0 and 1.

    Returns:
        One row per kind present, in REQUEST_KINDS order, then "total": requests, open, median_answer_days,
        and in_time_share (answered within ANSWER_DEADLINE_DAYS, among those with an answer date) with
        in_time_low and in_time_high.
    """
    rows = []
    for kind in [*REQUEST_KINDS, None]:
        part = requests if kind is None else requests.filter(pl.col("kind") == kind)
        if kind is not None and part.is_empty():
            continue
        closed = part.filter(pl.col("answer_days").is_not_null())
        in_time = wilson_interval(
            closed.filter(pl.col("answer_days") <= ANSWER_DEADLINE_DAYS).height, closed.height, confidence
        )
        rows.append(
            {
                "kind": kind or "total",
                "requests": part.height,
                "open": part.filter(pl.col("status") == "open").height,
                "median_answer_days": closed["answer_days"].median() if closed.height else None,
                "in_time_share": in_time.value,
                "in_time_low": in_time.low,
                "in_time_high": in_time.high,
            }
        )
    schema = {
        "kind": pl.String,
        "requests": pl.Int64,
        "open": pl.Int64,
        "median_answer_days": pl.Float64,
        "in_time_share": pl.Float64,
        "in_time_low": pl.Float64,
        "in_time_high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def requests_per_period(requests: pl.DataFrame, every: str = "1mo") -> pl.DataFrame:
    """Requests received per period and kind.

    Args:
        requests: the frame of `parse_requests`.
        every: the period, as a polars duration ("1w", "1mo").

    Returns:
        period (its first day), kind and requests, sorted by period then kind; empty periods are absent.
    """
    return (
        requests.with_columns(pl.col("date_received").dt.truncate(every).alias("period"))
        .group_by(["period", "kind"])
        .agg(pl.len().alias("requests"))
        .sort(["period", "kind"])
    )


# -- the example the project writes itself ------------------------------------------------------
EXAMPLE_PLACES = ("Palais des festivals", "Croisette", "Gare", "Vieux-Port")
# Waves around a festival: before (information campaign), during, after.
EXAMPLE_WAVES = ((date(2025, 5, 5), 5), (date(2025, 5, 14), 10), (date(2025, 6, 2), 5))
_TYPE_ATTITUDE = {"resident": 3.1, "visitor": 3.5, "worker": 3.3, "trader": 3.7, "other": 3.0}
_TYPE_WEIGHTS = (0.35, 0.35, 0.12, 0.10, 0.08)
_ITEM_OFFSET = {
    "q_informed": -0.4,
    "q_feel_safer": 0.2,
    "q_privacy_respected": -0.3,
    "q_trust_use": -0.2,
    "q_support_continuation": 0.0,
}
NO_ANSWER_RATE = 0.06


def example_survey(respondents: int = 240, seed: int = 2025) -> pl.DataFrame:
    """Plausible, entirely synthetic answers: a latent attitude per respondent (by type), item offsets,
    noise, an information campaign that raises q_informed over the waves, and a few unanswered items.

    Args:
        respondents: how many rows, spread over the EXAMPLE_WAVES.
        seed: the random seed (the same seed gives the same answers).

    Returns:
        A frame shaped like `parse_survey`'s, with the STANDARD_ITEMS.
    """
    rng = np.random.default_rng(seed)
    records = []
    for index in range(respondents):
        wave = index * len(EXAMPLE_WAVES) // respondents
        start, days = EXAMPLE_WAVES[wave]
        kind = str(rng.choice(RESPONDENT_TYPES, p=_TYPE_WEIGHTS))
        attitude = _TYPE_ATTITUDE[kind] + rng.normal(0, 0.7)
        record = {
            "respondent_id": f"EX-{index + 1:04d}",
            "date": start + timedelta(days=int(rng.integers(0, days))),
            "place": str(rng.choice(EXAMPLE_PLACES)),
            "respondent_type": kind,
        }
        for item, offset in _ITEM_OFFSET.items():
            campaign = 0.6 * wave if item == "q_informed" else 0.0
            answer = int(np.clip(round(attitude + offset + campaign + rng.normal(0, 0.6)), LIKERT_MIN, LIKERT_MAX))
            record[item] = None if rng.random() < NO_ANSWER_RATE else answer
        records.append(record)
    schema = {
        "respondent_id": pl.String,
        "date": pl.Date,
        "place": pl.String,
        "respondent_type": pl.String,
        **{item: pl.Int8 for item in STANDARD_ITEMS},
    }
    return pl.DataFrame(records, schema=schema, orient="row")


_REQUEST_KIND_WEIGHTS = (0.40, 0.25, 0.15, 0.08, 0.12)
_CHANNEL_WEIGHTS = (0.25, 0.40, 0.15, 0.10, 0.05, 0.05)


def example_requests(count: int = 36, seed: int = 2025, until: date = date(2025, 7, 15)) -> pl.DataFrame:
    """Synthetic rights requests and complaints over the experiment; the recent ones are still open.

    Args:
        count: how many requests.
        seed: the random seed (seed + 1 is used, so that the requests do not mirror the survey's draws).
        until: the example's last day: a request whose answer would come later is still open.

    Returns:
        A frame shaped like `parse_requests`' without answer_days, sorted by date received.
    """
    rng = np.random.default_rng(seed + 1)
    first = date(2025, 4, 28)
    span = (until - first).days
    records = []
    for index in range(count):
        received = first + timedelta(days=int(rng.integers(0, span - 5)))
        delay = int(rng.gamma(2.5, 8.0)) + 1  # median near 18 days; some past the month
        answered = received + timedelta(days=delay)
        kind = str(rng.choice(EXAMPLE_KINDS, p=_REQUEST_KIND_WEIGHTS))
        still_open = answered > until  # the reply would come after the example's end: no date_answered
        if still_open:
            status = "open"
        else:
            status = "rejected" if kind == "erasure" and rng.random() < 0.3 else "answered"
        records.append(
            {
                "request_id": f"EX-R{index + 1:03d}",
                "date_received": received,
                "kind": kind,
                "channel": str(rng.choice(REQUEST_CHANNELS, p=_CHANNEL_WEIGHTS)),
                "status": status,
                "date_answered": None if still_open else answered,
            }
        )
    records.sort(key=lambda r: (r["date_received"], r["request_id"]))
    schema = {
        "request_id": pl.String,
        "date_received": pl.Date,
        "kind": pl.String,
        "channel": pl.String,
        "status": pl.String,
        "date_answered": pl.Date,
    }
    return pl.DataFrame(records, schema=schema, orient="row")


def to_csv_text(frame: pl.DataFrame) -> str:
    """The CSV the templates describe: comma-separated, ISO dates, empty cells for no value.

    Args:
        frame: a survey or requests frame.

    Returns:
        The CSV text, header line first.
    """
    return frame.write_csv(null_value="", date_format="%Y-%m-%d", line_terminator="\n")


def example_frames(seed: int = 2025) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The example as an import would read it: written to CSV text, then parsed like any file.

    Args:
        seed: the random seed of `example_survey` and `example_requests`.

    Returns:
        The survey and the requests frames.
    """
    survey = parse_survey(to_csv_text(example_survey(seed=seed)), "example survey")
    requests = parse_requests(to_csv_text(example_requests(seed=seed)), "example requests")
    return survey, requests


def write_example(
    survey_path: Path, requests_path: Path | None = None, *, respondents: int = 240, seed: int = 2025
) -> list[Path]:
    """Write the synthetic example as CSV files, creating their folders.

    Args:
        survey_path: where the survey answers go.
        requests_path: where the requests go; None writes none.
        respondents: how many survey respondents.
        seed: the random seed.

    Returns:
        The files written.
    """
    written = []
    for path, frame in (
        (survey_path, example_survey(respondents, seed)),
        (requests_path, example_requests(seed=seed) if requests_path else None),
    ):
        if path is None or frame is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_csv_text(frame), encoding="utf-8")
        written.append(path)
    return written


# -- command line -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """The `example` and `check` commands (see the module's docstring).

    Args:
        argv: the arguments after the program name; None for sys.argv.

    Returns:
        The exit status: 0, or 2 with one line on stderr (argparse exits with 2 on a bad command line).
    """
    parser = argparse.ArgumentParser(prog="python -m workbench.social", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    example = commands.add_parser("example", help="write a synthetic example survey (and requests) CSV")
    example.add_argument("survey_csv", type=Path)
    example.add_argument("requests_csv", type=Path, nargs="?")
    example.add_argument("--seed", type=int, default=2025)
    example.add_argument("--respondents", type=int, default=240)
    check = commands.add_parser("check", help="validate a survey or requests CSV and print its indicators")
    check.add_argument("csv_file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "example":
        if args.respondents < 1:
            print("workbench.social: --respondents must be at least 1", file=sys.stderr)
            return 2
        for path in write_example(args.survey_csv, args.requests_csv, respondents=args.respondents, seed=args.seed):
            print(f"wrote {path}")
        return 0
    try:
        kind, frame = read_csv_file(args.csv_file)
    except SocialCsvError as exc:
        print(f"workbench.social: {exc}", file=sys.stderr)
        return 2
    indicators = request_indicators(frame) if kind == "requests" else survey_indicators(frame)
    print(f"{args.csv_file}: {kind}, {frame.height} row(s)")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, float_precision=3):
        print(indicators)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
