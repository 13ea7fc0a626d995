"""Social acceptability: CSV import with one-line errors, indicators and their intervals, template, example."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from datetime import date

import pytest

from tests.workbench.conftest import ROOT
from workbench import social
from workbench.social_app import SocialDashboard, _label
from workbench.stats import mean_t_interval, wilson_interval

DOCS = ROOT / "docs"
HEADER = "respondent_id,date,place,respondent_type,q_a,q_b"
REQUESTS_HEADER = ",".join(social.REQUEST_COLUMNS)


def survey(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


# -- intervals against published values --------------------------------------------------------------
@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        (8, 10, 0.4902, 0.9433),  # Newcombe (1998), and any Wilson calculator
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_known_values(successes, n, low, high):
    estimate = wilson_interval(successes, n)
    assert estimate.value == pytest.approx(successes / n)
    assert (estimate.low, estimate.high) == pytest.approx((low, high), abs=5e-5)
    assert estimate.n == n


def test_wilson_interval_edge_cases():
    assert wilson_interval(0, 0).value is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.5)
    narrower = wilson_interval(8, 10, confidence=0.90)
    assert narrower.low > 0.4902 and narrower.high < 0.9433


def test_mean_t_interval_known_values():
    # 1..5: mean 3, sd 1.5811, se 0.7071, t(0.975, 4) = 2.7764 -> 3 ± 1.9632
    estimate = mean_t_interval([1, 2, 3, 4, 5])
    assert (estimate.value, estimate.low, estimate.high) == pytest.approx((3.0, 1.0368, 4.9632), abs=5e-5)
    assert mean_t_interval([4.0]).low is None and mean_t_interval([4.0]).value == 4.0
    assert mean_t_interval([]).value is None
    constant = mean_t_interval([3, 3, 3])
    assert (constant.low, constant.high) == (3.0, 3.0)


# -- reading survey files ------------------------------------------------------------------------
def test_survey_is_read_with_types_and_no_answers():
    frame = social.parse_survey(survey("r1,2025-05-14,Croisette,visitor,5,", "r2,2025-05-15,Gare,resident,2,3"))
    assert frame.columns == ["respondent_id", "date", "place", "respondent_type", "q_a", "q_b"]
    assert frame["date"].to_list() == [date(2025, 5, 14), date(2025, 5, 15)]
    assert frame["q_a"].to_list() == [5, 2] and frame["q_b"].to_list() == [None, 3]


def test_semicolons_bom_and_blank_lines_are_accepted():
    text = "\ufeff" + survey(
        "r1;2025-05-14;Croisette;visitor;5;4", "", "r2;2025-05-14;Gare;trader;1;1", header=HEADER.replace(",", ";")
    )
    assert social.parse_survey(text).height == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "survey.csv: the file is empty"),
        (survey(header="respondent_id,date,place,q_a"), "survey.csv: row 1: missing column 'respondent_type'"),
        (survey(header="respondent_id,date,place,respondent_type"), "survey.csv: row 1: no Likert item column"),
        (survey(header=HEADER + ",comment"), "survey.csv: row 1: unknown column 'comment'"),
        (survey(header=HEADER + ",q_a"), "survey.csv: row 1: column 'q_a' appears twice"),
        (survey("r1,2025-05-14,Croisette,visitor,5"), "survey.csv: row 2: 5 values for 6 columns"),
        (
            survey("r1,2025-05-14,Croisette,visitor,5,4", "r2,14/05/2025,Gare,visitor,3,3"),
            "survey.csv: row 3, column date: '14/05/2025' is not a date (YYYY-MM-DD)",
        ),
        (
            survey("r1,2025-05-14,Croisette,tourist,5,4"),
            "survey.csv: row 2, column respondent_type: 'tourist' is not one of "
            "resident, visitor, worker, trader, other",
        ),
        (
            survey("r1,2025-05-14,Croisette,visitor,6,4"),
            "survey.csv: row 2, column q_a: '6' is not an answer (1 to 5, or empty for no answer)",
        ),
        (survey("r1,2025-05-14,Croisette,visitor,4,3.5"), "survey.csv: row 2, column q_b: '3.5' is not an answer"),
        (survey("r1,2025-05-14,,visitor,4,3"), "survey.csv: row 2, column place: a value is required"),
        (
            survey("r1,2025-05-14,Gare,visitor,4,3", "r1,2025-05-15,Gare,visitor,4,3"),
            "survey.csv: row 3, column respondent_id: 'r1' already used on row 2",
        ),
    ],
)
def test_survey_errors_name_file_row_and_column(text, message):
    with pytest.raises(social.SocialCsvError) as error:
        social.parse_survey(text, "survey.csv")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "row, message",
    [
        ("x1,2025-05-14,complaint,email,answered,", "row 2, column date_answered: required when status is answered"),
        (
            "x1,2025-05-14,complaint,email,open,2025-05-01",
            "row 2, column date_answered: 2025-05-01 is before date_received 2025-05-14",
        ),
        ("x1,2025-05-14,praise,email,open,", "row 2, column kind: 'praise' is not one of"),
        ("x1,2025-05-14,access,fax,open,", "row 2, column channel: 'fax' is not one of"),
        ("x1,2025-05-14,access,email,lost,", "row 2, column status: 'lost' is not one of"),
    ],
)
def test_request_errors_name_file_row_and_column(row, message):
    with pytest.raises(social.SocialCsvError, match=re.escape(f"requests.csv: {message}")):
        social.parse_requests(f"{REQUESTS_HEADER}\n{row}\n", "requests.csv")


def test_read_csv_file_errors(tmp_path):
    with pytest.raises(social.SocialCsvError, match="no such file"):
        social.read_csv_file(tmp_path / "nothing.csv")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(survey("r1,2025-05-14,Gare Saint-Honoré,visitor,4,4").encode("latin-1"))
    with pytest.raises(social.SocialCsvError, match=r"latin1.csv: not UTF-8 text"):
        social.read_csv_file(latin1)


# -- indicators ---------------------------------------------------------------------------------
def test_survey_indicators_known_values():
    frame = social.parse_survey(
        survey(
            "r1,2025-05-05,A,resident,5,1",
            "r2,2025-05-06,A,resident,4,2",
            "r3,2025-05-20,B,visitor,3,",
            "r4,2025-06-02,B,visitor,2,5",
            "r5,2025-06-03,B,visitor,1,5",
            "r6,2025-06-04,B,visitor,,4",
        )
    )
    overall = {r["item"]: r for r in social.survey_indicators(frame).iter_rows(named=True)}
    item_a = overall["q_a"]
    assert item_a["answers"] == 5 and item_a["agree_share"] == pytest.approx(2 / 5)
    expected_share, expected_mean = wilson_interval(2, 5), mean_t_interval([5, 4, 3, 2, 1])
    assert (item_a["agree_low"], item_a["agree_high"]) == pytest.approx((expected_share.low, expected_share.high))
    assert (item_a["mean"], item_a["mean_low"], item_a["mean_high"]) == pytest.approx((3.0, 1.0368, 4.9632), abs=5e-5)
    assert expected_mean.value == 3.0
    assert overall["q_b"]["answers"] == 5 and overall["q_b"]["agree_share"] == pytest.approx(3 / 5)

    by_type = social.survey_indicators(frame, "respondent_type")
    shares = {(r["group"], r["item"]): r["agree_share"] for r in by_type.iter_rows(named=True)}
    assert shares[("resident", "q_a")] == 1.0 and shares[("visitor", "q_a")] == 0.0
    assert shares[("visitor", "q_b")] == pytest.approx(1.0)  # 5, 5, 4 (no answer left out)


def test_survey_evolution_per_month_and_week():
    frame = social.parse_survey(
        survey(
            "r1,2025-05-05,A,resident,5,1",
            "r2,2025-05-06,A,resident,4,2",
            "r3,2025-05-20,B,visitor,3,",
            "r4,2025-06-02,B,visitor,2,5",
            "r5,2025-06-03,B,visitor,1,5",
        )
    )
    monthly = social.survey_evolution(frame, "q_a", "1mo")
    assert monthly["period"].to_list() == [date(2025, 5, 1), date(2025, 6, 1)]
    assert monthly["answers"].to_list() == [3, 2]
    assert monthly["agree_share"].to_list() == pytest.approx([2 / 3, 0.0])
    weekly = social.survey_evolution(frame, "q_a", "1w")
    assert weekly["period"].to_list() == [date(2025, 5, 5), date(2025, 5, 19), date(2025, 6, 2)]  # Mondays


def test_request_indicators_known_values():
    frame = social.parse_requests(
        "\n".join(
            [
                REQUESTS_HEADER,
                "a1,2025-05-01,access,email,answered,2025-05-11",  # 10 days
                "a2,2025-05-02,access,mail,answered,2025-06-12",  # 41 days: late
                "a3,2025-05-03,access,cnil,open,",
                "c1,2025-05-04,complaint,in_person,rejected,2025-05-24",  # 20 days
                "i1,2025-06-01,information,phone,withdrawn,",
            ]
        )
        + "\n"
    )
    rows = {r["kind"]: r for r in social.request_indicators(frame).iter_rows(named=True)}
    assert set(rows) == {"access", "complaint", "information", "total"}
    assert (rows["access"]["requests"], rows["access"]["open"], rows["access"]["median_answer_days"]) == (3, 1, 25.5)
    assert rows["access"]["in_time_share"] == 0.5
    expected = wilson_interval(2, 3)
    assert (
        rows["total"]["in_time_share"],
        rows["total"]["in_time_low"],
        rows["total"]["in_time_high"],
    ) == pytest.approx((2 / 3, expected.low, expected.high))
    assert rows["information"]["in_time_share"] is None  # withdrawn: never answered
    per_month = social.requests_per_period(frame, "1mo")
    assert {(p.month, k): n for p, k, n in per_month.iter_rows()} == {
        (5, "access"): 3,
        (5, "complaint"): 1,
        (6, "information"): 1,
    }


# -- template and example ---------------------------------------------------------------------------
def documented_columns() -> set[str]:
    text = (DOCS / "social_acceptability.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))


def test_templates_parse_and_every_column_is_documented():
    survey_template = (DOCS / "social_acceptability_template.csv").read_text()
    requests_template = (DOCS / "social_acceptability_requests_template.csv").read_text()
    frame = social.parse_survey(survey_template, "template")
    assert frame.height == 0 and social.item_columns(frame.columns) == list(social.STANDARD_ITEMS)
    assert social.parse_requests(requests_template, "template").height == 0
    columns = survey_template.splitlines()[0].split(",") + requests_template.splitlines()[0].split(",")
    assert set(columns) <= documented_columns()


@pytest.mark.slow
def test_shipped_examples_are_what_the_command_writes(tmp_path):
    survey_path, requests_path = tmp_path / "survey.csv", tmp_path / "requests.csv"
    result = subprocess.run(
        [sys.executable, "-m", "workbench.social", "example", str(survey_path), str(requests_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert survey_path.read_bytes() == (DOCS / "social_acceptability_example.csv").read_bytes()
    assert requests_path.read_bytes() == (DOCS / "social_acceptability_requests_example.csv").read_bytes()


def test_example_round_trips_through_the_importer():
    generated = social.example_survey(respondents=60, seed=7)
    assert social.parse_survey(social.to_csv_text(generated)).equals(generated)
    requests = social.example_requests(seed=7)
    parsed = social.parse_requests(social.to_csv_text(requests))
    assert parsed.drop("answer_days").equals(requests)
    assert generated["respondent_id"].str.starts_with("EX-").all()
    assert set(generated["respondent_type"].unique().to_list()) <= set(social.RESPONDENT_TYPES)
    answers = {v for item in social.STANDARD_ITEMS for v in generated[item].to_list()}
    assert answers == {None, 1, 2, 3, 4, 5}  # every answer, and some items left unanswered
    # The information campaign shows: more respondents say they were informed in the last wave.
    evolution = social.survey_evolution(social.example_frames()[0], "q_informed", "1mo")
    assert evolution["agree_share"][-1] > evolution["agree_share"][0]


@pytest.mark.slow
def test_check_command(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "workbench.social", "check", str(DOCS / "social_acceptability_example.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0 and "survey, 240 row(s)" in good.stdout
    bad_file = tmp_path / "bad.csv"
    bad_file.write_text(survey("r1,2025-05-14,Gare,visitor,9,1"))
    bad = subprocess.run(
        [sys.executable, "-m", "workbench.social", "check", str(bad_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        f"workbench.social: {bad_file}: row 2, column q_a: '9' is not an answer (1 to 5, or empty for no answer)"
    )


# -- the dashboard widgets ----------------------------------------------------------------------
def upload(content: bytes, name: str) -> tuple[dict, ...]:
    return (
        {
            "name": name,
            "type": "text/csv",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
        },
    )


def test_dashboard_imports_uploads_and_shows_indicators():
    dashboard = SocialDashboard()
    assert dashboard.survey_panel.children == ()
    dashboard.survey_upload.value = upload(
        survey("r1,2025-05-14,Gare,visitor,4,5", "r2,2025-05-20,Gare,resident,2,5").encode(), "wave1.csv"
    )
    assert "wave1.csv" in dashboard.message.value
    table = dashboard.survey_panel.children[0].value
    assert "q_a" in table and "50%" in table and "100%" in table
    assert [bytes(w.value)[:4] for w in dashboard.survey_panel.children[1:]] == [b"\x89PNG", b"\x89PNG"]
    assert dashboard.item.options == (("q_a", "q_a"), ("q_b", "q_b"))

    dashboard.requests_upload.value = upload(
        f"{REQUESTS_HEADER}\nx1,2025-05-14,access,email,answered,2025-05-20\n".encode(), "requests.csv"
    )
    assert "requests.csv" in dashboard.message.value and len(dashboard.requests_panel.children) == 2


def test_dashboard_shows_the_one_line_error_of_a_bad_upload():
    dashboard = SocialDashboard()
    dashboard.load_example()
    before = dashboard.survey
    dashboard.survey_upload.value = upload(survey("r1,2025-05-14,Gare,visitor,4,0").encode(), "wave2.csv")
    assert "wave2.csv: row 2, column q_b: &#x27;0&#x27; is not an answer" in dashboard.message.value
    assert dashboard.survey is before  # a refused file changes nothing
    dashboard.requests_upload.value = upload("caf\xe9".encode("latin-1"), "latin.csv")
    assert "latin.csv: not UTF-8 text" in dashboard.message.value


def test_dashboard_groups_and_periods():
    dashboard = SocialDashboard()
    dashboard.load_example()
    dashboard.group_by.value = "respondent_type"
    table = dashboard.survey_panel.children[0].value
    assert all(_label("social.type", kind) in table for kind in social.RESPONDENT_TYPES)
    dashboard.period.value = "month"
    dashboard.item.value = "q_trust_use"
    assert len(dashboard.survey_panel.children) == 3
