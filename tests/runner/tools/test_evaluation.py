"""Event-level scoring used by `vigie eval`: windows, tolerance, uncertain labels, per-kind totals."""

from __future__ import annotations

import pytest

from runner.cli import main
from runner.tools.evaluation import ClipResult, LabelledEvent, load_labels, score_clip, summarise


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
