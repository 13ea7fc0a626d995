"""The benchmark's own logic: arguments, plan, figures and the machine-readable last lines."""

from __future__ import annotations

import re

import pytest

from bench.perf import (
    Plan,
    build_parser,
    camera_capacity,
    latency_line,
    main,
    make_plan,
    median_ratio,
    median_run,
    percentile,
    report,
    rule_line,
    stage_lines,
)
from bench.sites import QUICK_RATIO_CLIPS, RATIO_CLIPS


def plan_of(*argv: str) -> Plan:
    return make_plan(build_parser().parse_args(list(argv)))


def test_default_plan_is_the_ratio_set_three_runs_and_eight_coco_cameras():
    args = build_parser().parse_args([])
    assert (args.model, args.capacity_model, args.cameras) == ("pose", "coco", 8)
    plan = plan_of()
    assert plan.ratio_clips == RATIO_CLIPS and plan.runs == 3
    assert len(plan.capacity_clips) == 8 and plan.capacity_max_s is None


def test_quick_plan_is_shorter_but_explicit_options_win():
    plan = plan_of("--quick")
    assert plan.ratio_clips == QUICK_RATIO_CLIPS and plan.runs == 1 and plan.capacity_max_s == 30.0
    plan = plan_of("--quick", "--runs", "2", "--capacity-max-s", "10", "--clips", "a.mp4")
    assert plan.ratio_clips == ("a.mp4",) and plan.runs == 2 and plan.capacity_max_s == 10.0


def test_capacity_only_and_ratio_only():
    plan = plan_of("--capacity-only", "--capacity-model", "pose", "--cameras", "17")
    assert plan.runs == 0 and plan.ratio_clips == () and len(plan.capacity_clips) == 17
    plan = plan_of("--ratio-only")
    assert plan.capacity_clips == () and plan.runs == 3


@pytest.mark.parametrize(
    "argv", [["--runs", "0"], ["--cameras", "x"], ["--model", "yolo"], ["--ratio-only", "--capacity-only"]]
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_data_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(tmp_path))
    assert main(["--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"bench: evaluation clips not found under {tmp_path} (set VIGIE_SHARED_DATA to the folder "
        "holding clips/ and models/)"
    ]


def test_figures():
    assert percentile([0.3, 0.1, 0.2, 0.4], 50) == 0.2
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert median_ratio([30.0, 20.0, 25.0], [10.0, 10.0, 5.0]) == 3.0
    assert median_ratio([], []) is None
    assert camera_capacity(34.9) == 6 and camera_capacity(35.0) == 7 and camera_capacity(4.9) == 0


def test_latency_and_stages_say_na_until_the_runner_reports_them():
    assert latency_line(None).endswith("n/a (the runner does not report it yet)")
    assert latency_line([]).endswith("no alert")
    assert "median 200 ms, p95 900 ms, max 900 ms" in latency_line([0.1, 0.2, 0.9])
    assert stage_lines(None, 10) == ["per-stage time: n/a (the runner does not report it yet)"]
    lines = stage_lines({"decode": 1.0, "detect": 3.0}, 100)
    detect = next(line for line in lines if line.strip().startswith("detect"))
    assert detect.split()[1:] == ["3.00", "30.0", "75%"]
    assert next(line for line in lines if line.strip().startswith("track")).split()[1:] == ["n/a", "n/a", "n/a"]


def fake_runner(fps: float, **extra) -> dict:
    result = {
        "kind": "runner",
        "model": "pose",
        "clips": {"cam": "x.mp4"},
        "notes": ["cam: rule r left out: needs fire"],
        "frames": {"cam": 100},
        "frames_total": 100,
        "wall_s": 100 / fps,
        "fps": fps,
        "alerts": [["cam", "fire", 1.0]],
        "kinds": {"cam": ["fire"]},
        "stop_reason": "sources ended",
        "camera_errors": {},
        "weights": {"person": "pt yolo11n-pose.pt"},
        "peak_rss_mb": 900.0,
        "device": "cpu",
    }
    result.update(extra)
    return result


def fake_naive(fps: float) -> dict:
    return {
        "kind": "naive",
        "model": "pose",
        "frames_total": 100,
        "wall_s": 100 / fps,
        "fps": fps,
        "in_zone": 3,
        "torch_threads": 1,
        "weights": {"person": "pt yolo11n-pose.pt"},
        "peak_rss_mb": 700.0,
        "strides": {"x.mp4": 5},
        "device": "cpu",
    }


def test_report_ends_with_the_machine_readable_lines():
    args = build_parser().parse_args(["--no-quality"])
    runs = [
        (fake_runner(30.0), fake_naive(10.0)),
        (fake_runner(20.0, stage_s={"detect": 2.0}, alert_latency_s=[0.2]), fake_naive(10.0)),
        (fake_runner(44.0), fake_naive(11.0)),
    ]
    capacity = fake_runner(37.5, frames={f"c{i}": 10 for i in range(8)})
    lines = report(runs, capacity, plan_of(), args)
    assert lines[-2:] == ["ratio_vs_naive: 3.00", "camera_capacity_5fps: 7"]
    text = "\n".join(lines)
    assert "runner alerts identical across runs: yes" in text
    assert "note: cam: rule r left out: needs fire" in text
    assert "frames gated (no detection, motion gate): n/a" in text
    assert re.search(r"run 3: runner 44\.0 fps .* naive 11\.0 fps .* ratio 4\.00", text)


def test_capacity_is_the_median_of_its_runs():
    assert plan_of().capacity_runs == 3 and plan_of("--quick").capacity_runs == 1
    assert plan_of("--capacity-only", "--runs", "5").capacity_runs == 5
    runs = [fake_runner(fps, frames={f"c{i}": 10 for i in range(8)}) for fps in (31.0, 24.0, 27.5)]
    assert median_run(runs)["fps"] == 27.5 and median_run(runs[:2])["fps"] == 24.0
    args = build_parser().parse_args(["--no-quality"])
    lines = report([], median_run(runs), plan_of("--capacity-only"), args, capacity_fps=[r["fps"] for r in runs])
    assert lines[-1] == "camera_capacity_5fps: 5"
    assert "3 runs: 31.0, 24.0, 27.5 processed fps; the median run:" in lines
    assert any("27.5 processed fps / 5 (median of 3 run(s))" in line for line in lines)


def test_rules_time_is_split_by_kind_costliest_first():
    assert (
        rule_line({"wrong_way": 0.1, "crowd_density": 2.0}, 100)
        == "rules by kind (ms/frame): crowd_density 20.0, wrong_way 1.0"
    )
    assert rule_line(None, 10) == "rules by kind: n/a"


def test_report_without_measurements_says_na():
    args = build_parser().parse_args(["--no-quality"])
    assert report([], None, plan_of("--ratio-only"), args)[-2:] == ["ratio_vs_naive: n/a", "camera_capacity_5fps: n/a"]
    runs = [(fake_runner(30.0), fake_naive(10.0)), (fake_runner(30.0, alerts=[]), fake_naive(10.0))]
    assert "runner alerts identical across runs: NO" in "\n".join(report(runs, None, plan_of(), args))


def test_gated_frames_are_summed_over_cameras():
    from bench.perf import gated_text

    assert gated_text(None, 10) == "n/a"
    assert gated_text({"a": 3, "b": 2}, 20) == "5 of 20 (25 %)"
    assert gated_text(4, 8) == "4 of 8 (50 %)"


def test_latency_run_says_whether_analysis_kept_up():
    args = build_parser().parse_args(["--no-quality"])
    runs = [(fake_runner(30.0), fake_naive(10.0))]
    kept = report(runs, None, plan_of(), args, fake_runner(5.0, live=True, alert_latency_s=[0.3, 0.4, 0.5]))
    text = "\n".join(kept)
    assert "processed 100 of the 100 frames a replay processes" in text and "could not keep up" not in text
    assert "median 400 ms, p95 500 ms, max 500 ms" in text
    lagged = report(runs, None, plan_of(), args, fake_runner(5.0, live=True, frames_total=60))
    assert "processed 60 of the 100 frames a replay processes" in "\n".join(lagged)
    assert "could not keep up" in "\n".join(lagged)


@pytest.mark.data
def test_quality_table_scores_the_alerts_against_the_labels(shared_data, monkeypatch):
    from bench.perf import quality_lines

    monkeypatch.setenv("VIGIE_SHARED_DATA", str(shared_data))
    result = {
        "clips": {"stampede": "crowd_drishti_stampede_cctv.mp4", "urfall": "urfall_fall-01-cam0.mp4"},
        "kinds": {"stampede": ["crowd_density", "crowd_movement"], "urfall": ["person_down"]},
        # density inside its labelled window; a fall alert 1.5 s before the labelled fall (false), none after it
        "alerts": [["stampede", "crowd_density", 3.0], ["urfall", "person_down", 0.5]],
    }
    lines = quality_lines(result)
    rows = {line.split()[0]: line.split()[1:6] for line in lines[2:5]}
    assert rows == {
        "crowd_density": ["1", "1", "1", "0", "0"],
        "crowd_movement": ["1", "1", "0", "1", "0"],
        "person_down": ["1", "1", "0", "1", "1"],
    }
    details = lines[5:]
    assert any(
        d.startswith("bench/urfall person_down: 1 alert(s), found 0/1") and "false at 0.5s" in d for d in details
    )
    assert any(d.startswith("bench/stampede crowd_movement: 0 alert(s)") for d in details)
    assert not any("crowd_density" in d for d in details)


def test_weights_say_what_the_runner_actually_ran():
    from pathlib import Path
    from types import SimpleNamespace

    from bench.perf import weights_text

    resolved = SimpleNamespace(path=Path("/x/yolo11n-pose.pt"), backend="pt")
    assert weights_text(SimpleNamespace(resolved=resolved)) == "yolo11n-pose.pt (pt)"
    exported = SimpleNamespace(
        resolved=resolved, backend="openvino", runtime=SimpleNamespace(backend="openvino", how="cached OpenVINO export")
    )
    assert weights_text(exported) == "yolo11n-pose.pt (pt) run as openvino: cached OpenVINO export"


def test_cpu_time_is_grouped_by_kind_of_thread():
    import threading
    import time

    from bench.cputime import ThreadCpuSampler, group_of
    from bench.perf import cpu_line

    assert group_of("python", None, True) == "analysis thread"
    assert group_of("python", "detect_0", False) == "detector thread"
    assert group_of("python", "capture-cam-01", False) == "capture threads"
    assert group_of("av:h264:df1", None, False) == "decoders (FFmpeg)"
    assert group_of("python", None, False) == "inference workers"  # a native pool thread
    spin_until = time.monotonic() + 0.6

    def busy():  # burns CPU in a thread named like a capture thread, which ends before the sampler
        while time.monotonic() < spin_until:
            sum(range(1000))
        # Under a loaded test process the sampler can be starved of the GIL while this thread spins:
        # end only once a sample has recorded the CPU burnt (what must survive the thread's end).
        me, waited_until = str(threading.get_native_id()), time.monotonic() + 10.0
        while sampler._last.get(me, ("", 0.0))[1] < 0.1 and time.monotonic() < waited_until:
            time.sleep(0.01)

    with ThreadCpuSampler(every_s=0.05) as sampler:
        worker = threading.Thread(target=busy, name="capture-cam-01")
        worker.start()
        worker.join()
        time.sleep(0.1)
    groups = sampler.groups()
    assert groups.get("capture threads", 0.0) >= 0.1  # kept after the thread ended (0 if it were lost)
    assert groups.get("analysis thread", 0.0) < 0.3  # the main thread mostly waited
    assert cpu_line({"analysis thread": 1.0, "inference workers": 3.0}, 100).startswith(
        "CPU by thread (ms per processed frame, total 40.0): analysis thread 10.0, inference workers 30.0"
    )
    assert cpu_line(None, 5) == "CPU by thread: n/a"


def test_cores_busy_is_the_threads_cpu_over_what_the_cores_offered():
    from bench.perf import busy_line

    assert busy_line({"analysis thread": 9.0, "inference workers": 27.0}, 20.0, 2) == (
        "cores busy: 36.0 CPU s in 20.0 s on 2 cores = 90 %"
    )
    assert busy_line(None, 20.0, 2) == "cores busy: n/a"
    assert busy_line({"analysis thread": 1.0}, 0.0, 2) == "cores busy: n/a"
