"""The site benchmark's own logic: the 17 cameras, its arguments, its figures and its last lines."""

from __future__ import annotations

import re

import pytest

from bench.site import (
    SITE_CAMERAS,
    CameraFigures,
    PlainReplay,
    build_cannes_site,
    build_parser,
    camera_figures,
    check_args,
    compare_events,
    cooldowns_of,
    cpu_used_line,
    duration_of,
    last_lines,
    main,
    selected_cameras,
    site_capacity_lines,
    site_demand_fps,
)
from bench.sites import write_site

LAST_LINES = (
    r"site_cameras_realtime: (\d+)/(\d+)",
    r"ratio_vs_naive: (\d+\.\d\d|n/a)",
    r"camera_capacity_5fps: (\d+|n/a)",
)


def test_the_site_is_seventeen_cameras_of_the_cannes_mix():
    assert len(SITE_CAMERAS) == 17 and len({c.id for c in SITE_CAMERAS}) == 17
    site = build_cannes_site(loop=True)
    assert site.notes == [] and list(site.clips) == [c.id for c in SITE_CAMERAS]
    kinds = {c["id"]: {r["kind"] for r in c["rules"]} for c in site.data["cameras"]}
    places = {c.place for c in SITE_CAMERAS}
    assert places == {"station forecourt", "boulevard", "Palais steps", "car park", "night view"}
    by_place = {p: set().union(*(kinds[c.id] for c in SITE_CAMERAS if c.place == p)) for p in places}
    assert {"abandoned_object", "crowd_density"} <= by_place["station forecourt"]
    assert {"wrong_way", "zone_intrusion"} <= by_place["boulevard"]
    assert by_place["Palais steps"] == {"crowd_density", "crowd_movement"}
    assert by_place["car park"] == {"fire"}
    assert all(kinds[c.id] == set(c.kinds) for c in SITE_CAMERAS)  # each camera carries exactly its kinds
    assert all(c["loop"] for c in site.data["cameras"])


def test_models_are_those_a_new_users_config_names(tmp_path):
    loaded = write_site(build_cannes_site(loop=False), tmp_path)
    models = loaded.config.models
    # The detector first (persons, bags, vehicles), the pose model for keypoints, the flame model for fire.
    assert list(models) == ["coco", "person", "fall", "fire"]
    assert models["coco"].weights.endswith("yolo11n_int8_openvino_model")
    assert models["person"].weights.endswith("yolo11n-pose.pt") and models["fall"].on_demand
    assert models["fire"].imgsz == 320 and not models["fire"].track
    assert not any(c.loop for c in loaded.config.cameras)
    # Each camera runs at the highest rate its evaluation cameras ask for (fire: 6, abandoned objects alone: 3).
    fps = {c.id: c.process_fps for c in loaded.config.cameras}
    assert fps["carpark-pumps"] == 6.0 and fps["forecourt-platform"] == 3.0 and fps["forecourt-junction"] == 5.0
    # and analyses the frames its rules need: abandoned objects 1 a second, fire every frame allowed.
    analysed = {c.id: c.analysed_fps for c in loaded.config.cameras}
    assert analysed["forecourt-platform"] == 1.0 and analysed["forecourt-hall"] == 1.0
    assert analysed["carpark-pumps"] == 6.0 and analysed["boulevard-crossing"] == 5.0


def test_a_subset_without_falls_or_fire_loads_neither_model():
    site = build_cannes_site(selected_cameras(["boulevard-traffic", "palais-steps"]), loop=True)
    assert list(site.data["models"]) == ["coco"] and list(site.clips) == ["boulevard-traffic", "palais-steps"]


def test_each_clip_of_the_site_is_in_the_shared_data(shared_data):
    missing = [c.clip for c in SITE_CAMERAS if not (shared_data / "clips" / c.clip).is_file()]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--duration-s", "0"], "--duration-s must be a positive number of seconds, not 0"),
        (["--duration-s", "-5"], "--duration-s must be a positive number of seconds, not -5"),
        (["--cameras", "palais-steps", "lobby"], "unknown camera lobby (cameras: forecourt-junction,"),
    ],
)
def test_bad_values_are_a_one_line_error(argv, problem, capsys):
    assert check_args(build_parser().parse_args(argv)).startswith(problem)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bench-site: {problem}")


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--duration-s", "soon"])
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_missing_data_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(tmp_path))
    assert main(["--quick"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"bench-site: evaluation clips not found under {tmp_path} (set VIGIE_SHARED_DATA to the folder "
        "holding clips/ and models/)"
    ]


def test_durations():
    assert duration_of(build_parser().parse_args([])) == 120.0
    assert duration_of(build_parser().parse_args(["--quick"])) == 45.0
    assert duration_of(build_parser().parse_args(["--quick", "--duration-s", "7"])) == 7.0


def frames_of(origin: float, times: list[float], late_s) -> list[tuple[float, int, float, float]]:
    """(t_s, index, read, analysed) of frames read on time and analysed `late_s(t)` after they were shown."""
    return [(t, i, origin + t, origin + t + late_s(t)) for i, t in enumerate(times)]


def test_a_camera_that_keeps_up_is_real_time():
    times = [i * 0.2 for i in range(300)]  # 60 s at 5 fps
    frames = frames_of(100.0, times, lambda t: 0.15)
    alerts = [("cam", "fire", 10.0, 50, 100.0 + 10.0 + 0.4), ("other", "fire", 10.0, 50, 999.0)]
    figures = camera_figures("cam", frames, alerts, stop_mono=100.0 + 60.0)
    assert figures.frames == 300 and figures.backlog_p95_s == pytest.approx(0.15)
    assert figures.backlog_end_s == pytest.approx(0.0, abs=1e-9) and figures.latencies_s == pytest.approx((0.4,))
    assert figures.realtime


def test_a_growing_backlog_or_a_late_alert_is_not_real_time():
    times = [i * 0.2 for i in range(300)]
    # The first frame is read on time, then the reader waits for the analysis: 5 % behind, growing.
    frames = [(t, i, 100.0 + t * 1.05, 100.0 + t * 1.05 + 0.1) for i, t in enumerate(times)]
    lagging = camera_figures("cam", frames, [], stop_mono=100.0 + 60.0 * 1.05)
    assert lagging.backlog_p95_s == pytest.approx(59.6 * 0.05 + 0.1, abs=0.1) and not lagging.realtime
    steady = frames_of(100.0, times, lambda t: 0.1)
    late_alert = camera_figures("cam", steady, [("cam", "fire", 30.0, 150, 100.0 + 31.5)], stop_mono=160.0)
    assert late_alert.latency_p95_s == pytest.approx(1.5) and not late_alert.realtime
    stalled = camera_figures("cam", steady[:100], [], stop_mono=160.0)  # nothing analysed after 20 s
    assert stalled.backlog_end_s == pytest.approx(160.0 - 100.0 - 19.8 - 0.2) and not stalled.realtime
    assert not camera_figures("cam", [], [], stop_mono=160.0).realtime


def test_events_are_matched_pass_by_pass():
    # A 10 s clip at 10 fps (100 frames a pass); the plain replay alerted at 2 s (fire) and 8 s (density).
    plain = PlainReplay({"cam": [("fire", 2.0), ("crowd_density", 8.0)]}, {"cam": 100}, {"cam": 10.0}, 1.0)
    live = [
        ("cam", "fire", 2.0, 20, 0.0),
        ("cam", "crowd_density", 8.2, 82, 0.0),
        ("cam", "fire", 12.0, 120, 0.0),  # pass 2, 2.0 s into it
        ("cam", "weapon", 13.0, 130, 0.0),  # no such event
    ]
    # Analysed up to 15 s: pass 1 whole, pass 2 to 5 s (its 8 s event is not due yet).
    result = compare_events(plain, live, {"cam": 150})
    assert (result.expected, result.found, result.lost) == (3, 3, [])
    assert result.extra == [("cam", "weapon", 1, 3.0)]
    # Pass 2 analysed to its end without the density alert: lost.
    result = compare_events(plain, live[:3], {"cam": 199})
    assert result.expected == 4 and result.lost == [("cam", "crowd_density", 1, 8.0)]
    # An alert at the same time in the wrong pass does not count for another.
    result = compare_events(plain, [("cam", "fire", 12.0, 120, 0.0)], {"cam": 150})
    assert [(kind, k) for _, kind, k, _ in result.lost] == [("fire", 0), ("crowd_density", 0)]


def test_an_event_the_cooldown_holds_back_in_the_next_pass_is_not_lost():
    # A 9.2 s clip (230 frames at 25 fps) whose density alert comes at 5 s: with a 10 s cooldown on stream time,
    # which goes on across the loop, pass 2's alert (14.2 s) is held back, pass 3's (23.4 s) is raised.
    plain = PlainReplay({"cam": [("crowd_density", 5.0)]}, {"cam": 230}, {"cam": 25.0}, 1.0)
    live = [("cam", "crowd_density", 5.0, 125, 0.0), ("cam", "crowd_density", 23.4, 585, 0.0)]
    cooldowns = cooldowns_of({"cameras": [{"id": "cam", "rules": [{"kind": "crowd_density", "cooldown_s": 10.0}]}]})
    result = compare_events(plain, live, {"cam": 689}, cooldowns)
    assert (result.expected, result.found, result.lost) == (3, 2, [])
    assert result.cooled == [("cam", "crowd_density", 1, 5.0)]
    assert compare_events(plain, live, {"cam": 689}).lost == [("cam", "crowd_density", 1, 5.0)]
    # Pass 3 found before the live run analysed a second past it: found, not "extra".
    assert compare_events(plain, live, {"cam": 586}, cooldowns).found == 2


def test_cpu_line_and_last_lines():
    assert cpu_used_line(150.0, 100.0, 2) == "CPU used: 150.0 CPU s in 100.0 s = 1.50 cores of 2 (75 % per core)"
    lines = last_lines(12, 17, 3.456, 7)
    assert lines == ["site_cameras_realtime: 12/17", "ratio_vs_naive: 3.46", "camera_capacity_5fps: 7"]
    assert last_lines(0, 2, None, None)[1:] == ["ratio_vs_naive: n/a", "camera_capacity_5fps: n/a"]
    for pattern, line in zip(LAST_LINES, lines):
        assert re.fullmatch(pattern, line)
    assert CameraFigures("c", 1, 0.2, 0.0, ()).latency_p95_s is None


@pytest.mark.slow
@pytest.mark.data
def test_a_tiny_live_site_prints_its_figures(shared_data, monkeypatch, capsys):
    monkeypatch.setenv("VIGIE_SHARED_DATA", str(shared_data))
    cameras = ["boulevard-shops", "night-fence"]  # 4 s and 9 s clips: they loop within the run
    argv = ["--cameras", *cameras, "--duration-s", "12", "--site-capacity-s", "5", "--no-ratio", "--no-capacity"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    for pattern, line in zip(LAST_LINES, out[-3:]):
        assert re.fullmatch(pattern, line), line
    assert re.fullmatch(r"site_cameras_realtime: \d+/2", out[-3])
    assert out[-2:] == ["ratio_vs_naive: n/a", "camera_capacity_5fps: n/a"]
    assert re.fullmatch(r"sites_per_node: \d+ \(\d+\.\d\d\)", out[-4])  # the site capacity run
    text = "\n".join(out)
    assert re.search(r"CPU used: [\d.]+ CPU s in [\d.]+ s = [\d.]+ cores of \d+", text)
    assert re.search(r"^  detect\s+[\d.]+\s+[\d.]+", text, re.MULTILINE)  # the per-stage cost
    rows = {line.split()[0]: line.split() for line in out if line.startswith("  ") and line.split()[0] in cameras}
    assert set(rows) == set(cameras) and all(int(row[2]) > 0 for row in rows.values())  # frames analysed
    # Both clips ended at least once: the events of the first pass were compared.
    assert re.search(r"events \(the plain replay's alerts.*\): \d+; found live \d+; .*; lost \d+;", text)


def test_site_capacity_is_processed_fps_over_what_one_site_asks(tmp_path):
    loaded = write_site(build_cannes_site(loop=True), tmp_path)
    demand = site_demand_fps(loaded.config.cameras)
    assert (
        demand == sum(c.analysed_fps for c in loaded.config.cameras) < sum(c.process_fps for c in loaded.config.cameras)
    )
    lines, sites = site_capacity_lines({"fps": 2.5 * demand, "wall_s": 30.0, "cpu_total_s": 54.0}, demand, 2)
    assert sites == pytest.approx(2.5)
    assert f"against {demand:g} asked by one site: 2.50 sites of this mix" in lines[2]
    assert lines[3] == "CPU used: 54.0 CPU s in 30.0 s = 1.80 cores of 2 (90 % per core)"


def test_a_capacity_run_of_no_time_is_refused():
    args = build_parser().parse_args(["--site-capacity-s", "0"])
    assert check_args(args) == "--site-capacity-s must be a positive number of seconds, not 0"
