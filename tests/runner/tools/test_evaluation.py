"""Event-level scoring used by `vigie eval`: windows, tolerance, uncertain labels, per-kind and per-half totals,
Wilson intervals, time to alert, the evaluation split."""

from __future__ import annotations

import pytest

from runner.cli import main
from runner.core.errors import ConfigError
from runner.tools.evaluation import (
    ClipResult,
    LabelledEvent,
    format_details,
    format_summary,
    load_labels,
    load_split,
    score_clip,
    summarise,
    unsplit_clips,
    wilson_bounds,
)


def ev(start, end, polarity="positive", kind="fire"):
    return LabelledEvent("clip.mp4", kind, polarity, start, end)


@pytest.mark.parametrize(
    ("alerts", "events", "found", "missed", "false"),
    [
        ([], [ev(0, 10)], 0, 1, []),
        ([5.0], [ev(0, 10)], 1, 0, []),
        ([5.0, 6.0, 9.0], [ev(0, 10)], 1, 0, []),  # one window counts once
        ([10.8], [ev(0, 10)], 1, 0, []),  # within the 1 s tolerance
        ([11.5], [ev(0, 10)], 0, 1, [11.5]),
        ([3.0, 30.0], [ev(0, 10), ev(20, 25)], 1, 1, [30.0]),
        ([5.0], [ev(0, 10, "negative")], 0, 0, [5.0]),  # a negative window is not an event
        ([5.0], [ev(4, 8, "uncertain")], 0, 0, []),  # neither found nor false
        ([5.0], [], 0, 0, [5.0]),
    ],
)
def test_score_clip(alerts, events, found, missed, false):
    score = score_clip(alerts, events, tolerance_s=1.0)
    assert (len(score.found), len(score.missed), score.false_alert_times_s) == (found, missed, false)


def test_summary_counts_events_and_false_alerts_per_hour():
    def result(kind, alerts, events, duration_s):
        return ClipResult("s", "c", "clip.mp4", kind, duration_s, alerts, score_clip(alerts, events), bool(events))

    summaries = summarise(
        [
            result("fire", [5.0], [ev(0, 10)], 1800.0),
            result("fire", [100.0, 200.0], [], 1800.0),
            result("weapon", [], [ev(0, 5, kind="weapon")], 60.0),
        ]
    )
    fire, weapon = summaries
    assert (fire.kind, fire.clips, fire.events, fire.found, fire.missed, fire.false_alerts) == ("fire", 2, 1, 1, 0, 2)
    assert fire.false_per_hour == pytest.approx(2.0)
    assert (weapon.events, weapon.found, weapon.missed, weapon.false_per_hour) == (1, 0, 1, 0.0)


def test_labels_map_event_types_to_rule_kinds(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "clip,event_type,polarity,start_s,end_s,gt_source,notes\n"
        "a.mp4,intrusion,positive,1,2,manual,x\na.mp4,fall_lying,negative,3,4,manual,y\n"
    )
    assert [(e.kind, e.polarity) for e in load_labels(path)] == [
        ("zone_intrusion", "positive"),
        ("person_down", "negative"),
    ]


def test_eval_without_labels_is_a_clear_error(tmp_path, capsys):
    code = main(["eval", "zones/eval/site.yaml", "--labels", str(tmp_path / "none.csv")])
    assert code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"vigie: labels file not found: {tmp_path / 'none.csv'} (set VIGIE_SHARED_DATA or pass --labels)"
    )


def test_touching_windows_are_one_event():
    # UR Fall labels the falling transition (2.73-3.70 s) and the lying phase (3.73-5.30 s) apart.
    score = score_clip([4.8], [ev(2.73, 3.70), ev(3.73, 5.30), ev(24.3, 24.8)], tolerance_s=1.0)
    assert [(e.start_s, e.end_s) for e in score.found] == [(2.73, 5.30)]
    assert [(e.start_s, e.end_s) for e in score.missed] == [(24.3, 24.8)]


def test_eval_with_a_missing_clip_is_a_clear_error(tmp_path, capsys, monkeypatch):
    labels = tmp_path / "events.csv"
    labels.write_text("clip,event_type,polarity,start_s,end_s,gt_source,notes\n")
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(tmp_path / "absent"))
    # The fall site's models come from wheels, so the first thing missing is the clip itself.
    code = main(["eval", "zones/eval-fall/site.yaml", "--camera", "room", "--labels", str(labels)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 4
    assert (
        err == f"vigie: camera room: source file not found: {tmp_path}/absent/clips/"
        "fall_eikesan_video_sit_then_fall_room.mp4"
    )


# -- honest figures: Wilson intervals, time to alert, halves of the split ----------------------------
@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (6, 7, 0.487, 0.974),  # the regression net's person_down today
        (0, 10, 0.0, 0.278),
        (10, 10, 0.722, 1.0),
        (1, 2, 0.095, 0.905),
        (50, 100, 0.404, 0.596),
    ],
)
def test_wilson_interval_matches_known_values(successes, trials, low, high):
    assert wilson_bounds(successes, trials) == pytest.approx((low, high), abs=5e-4)


def test_wilson_interval_without_trials_is_undefined():
    assert wilson_bounds(0, 0) is None


def test_time_to_alert_is_the_first_alert_after_each_found_events_start():
    score = score_clip([12.5, 13.0, 31.0, 60.0, 79.5], [ev(10, 20), ev(30, 40), ev(50, 55), ev(80, 90)])
    assert [(e.start_s, e.end_s) for e in score.found] == [(10, 20), (30, 40), (80, 90)]
    # the first alert of each window counts; one inside the tolerance before the start gives a negative delay
    assert score.alert_delays_s == pytest.approx([2.5, 1.0, -0.5])
    assert score.false_alert_times_s == [60.0]


def clip_result(clip, kind, alerts, events, duration_s=60.0):
    return ClipResult("s", "c", clip, kind, duration_s, alerts, score_clip(alerts, events), bool(events))


def test_summary_per_half_with_recall_precision_and_time_to_alert():
    split = {"a.mp4": "tuning", "b.mp4": "checking", "c.mp4": "tuning"}
    results = [
        clip_result("a.mp4", "fire", [2.0, 40.0], [ev(1, 10)], 1800.0),  # found after 1 s, one false alert
        clip_result("c.mp4", "fire", [25.0], [ev(20, 30)], 1800.0),  # found after 5 s
        clip_result("b.mp4", "fire", [], [ev(0, 10), ev(20, 30)], 3600.0),  # both missed
        clip_result("x.mp4", "fire", [7.0], [ev(4, 9)], 60.0),  # absent from the split
    ]
    tuning, checking, unsplit, overall = summarise(results, split)
    assert [s.half for s in (tuning, checking, unsplit, overall)] == ["tuning", "checking", "unsplit", "all"]
    assert (tuning.clips, tuning.events, tuning.found, tuning.missed, tuning.false_alerts) == (2, 2, 2, 0, 1)
    assert tuning.false_per_hour == pytest.approx(1.0)
    assert tuning.alert_delays_s == pytest.approx([1.0, 5.0])
    assert tuning.recall_interval == pytest.approx((0.342, 1.0), abs=5e-4)  # 2/2
    assert tuning.precision_interval == pytest.approx((0.208, 0.939), abs=5e-4)  # 2 found, 1 false
    assert (checking.events, checking.found, checking.missed, checking.precision_interval) == (2, 0, 2, None)
    assert (unsplit.clips, unsplit.found, unsplit.alert_delays_s) == (1, 1, [3.0])
    assert (overall.clips, overall.events, overall.found, overall.missed, overall.false_alerts) == (4, 5, 3, 2, 1)
    assert sorted(overall.alert_delays_s) == pytest.approx([1.0, 3.0, 5.0])
    assert overall.as_dict()["alert_delay_median_s"] == pytest.approx(3.0)
    assert overall.as_dict()["alert_delay_max_s"] == pytest.approx(5.0)
    assert unsplit_clips(results, split) == ["x.mp4"]


def test_summary_shows_both_halves_even_when_one_holds_no_clip_of_a_kind():
    summaries = summarise([clip_result("a.mp4", "wrong_way", [3.0], [ev(2, 5, kind="wrong_way")])], {"a.mp4": "tuning"})
    assert [(s.half, s.clips, s.found) for s in summaries] == [("tuning", 1, 1), ("checking", 0, 0), ("all", 1, 1)]


def test_table_gives_intervals_time_to_alert_and_names_unsplit_clips():
    results = [
        clip_result(
            "a.mp4", "person_down", [1.5 + 20 * i for i in range(6)], [ev(20 * i, 20 * i + 10) for i in range(7)]
        )
    ]
    table = format_summary(summarise(results, {"a.mp4": "checking"}), ["new_clip.mp4"])
    checking_row = next(line for line in table.splitlines() if line.startswith("person_down") and "checking" in line)
    assert "0.86 [0.49-0.97]" in checking_row  # recall 6/7
    assert "1.00 [0.61-1.00]" in checking_row  # precision 6/6
    assert "1.5 / 1.5 s" in checking_row
    assert table.splitlines()[-1] == "unsplit (absent from the split file): new_clip.mp4"
    tuning_row = next(line for line in table.splitlines() if "tuning" in line)
    assert tuning_row.split()[2:9] == ["0", "0", "0", "0", "0", "0.0", "0.0"]
    assert tuning_row.rstrip().endswith("-")  # no event: no rate, no time to alert


def test_details_name_each_clips_half_and_its_time_to_alert():
    results = [clip_result("a.mp4", "fire", [3.0], [ev(1, 10)]), clip_result("x.mp4", "fire", [], [ev(1, 10)])]
    assert format_details(results, {"a.mp4": "tuning"}).splitlines() == [
        "[tuning] s/c fire: 1 alert(s), found 1/1 (to alert +2.0s)",
        "[unsplit] s/c fire: 0 alert(s), found 0/1, missed 1-10s",
    ]


def test_the_fixed_split_lists_every_clip_once_in_one_of_two_halves():
    split = load_split("zones/eval_split.csv")
    assert set(split.values()) == {"tuning", "checking"}
    assert "urfall_fall-01-cam0.mp4" in split


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("clip,half\na.mp4,tune\n", "line 2: half 'tune' of a.mp4 is not tuning or checking"),
        ("clip,half\na.mp4,tuning\na.mp4,checking\n", "line 3: a.mp4 is listed twice"),
        ("# a comment\nclip,half\na.mp4\n", "line 3: expected 'clip,half', got 'a.mp4'"),
        ("a.mp4,tuning\n", "the first row that is not a comment must be the header 'clip,half'"),
    ],
)
def test_a_bad_split_file_is_a_one_line_error(tmp_path, text, problem):
    path = tmp_path / "split.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_split(path)
    assert str(error.value) == f"{path}: {problem}"


def test_eval_with_a_missing_split_file_fails_before_any_replay(tmp_path, capsys):
    labels = tmp_path / "events.csv"
    labels.write_text("clip,event_type,polarity,start_s,end_s,gt_source,notes\n")
    code = main(["eval", "zones/eval/site.yaml", "--labels", str(labels), "--split", str(tmp_path / "none.csv")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"vigie: split file not found: {tmp_path / 'none.csv'}"


def test_table_without_a_split_has_no_half_column():
    table = format_summary(summarise([clip_result("a.mp4", "fire", [3.0], [ev(1, 10)])]))
    header, _, row = table.splitlines()
    assert header.split()[:3] == ["kind", "clips", "events"]
    assert row.split()[:6] == ["fire", "1", "1", "1", "0", "0"]
