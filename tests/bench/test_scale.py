"""The scale-out benchmark's own logic, its `--help`, and its `--smoke` run end to end (SQLite only, no server),
so that bench/scale.py cannot rot between the runs of `make bench-scale`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale import (
    BACKENDS,
    WriteRun,
    build_parser,
    in_order_per_camera,
    main,
    make_plan,
    spread_ms,
    summary_lines,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "scale.py"


def plan_of(*argv: str):
    return make_plan(build_parser().parse_args(list(argv)))


def test_default_quick_and_smoke_plans():
    full, quick, smoke = plan_of(), plan_of("--quick"), plan_of("--smoke")
    assert full.backends == quick.backends == BACKENDS and full.writers == quick.writers == (1, 2, 4, 8)
    assert (full.renew_s, full.ttl_s, full.kills, full.runner_kills) == (2.0, 10.0, 10, 3)  # the runner's defaults
    assert (quick.renew_s, quick.ttl_s, quick.kills, quick.runner_kills) == (0.5, 3.0, 10, 0)
    assert quick.write_s < full.write_s
    assert smoke.backends == ("sqlite",) and not smoke.mqtt and (smoke.kills, smoke.runner_kills) == (1, 0)
    assert smoke.parts == ("register", "takeover", "outbox")


def test_explicit_options_win_over_the_size():
    plan = plan_of("--quick", "--writers", "3", "--backends", "postgresql", "--kills", "2", "--only", "takeover")
    assert (plan.writers, plan.backends, plan.kills, plan.parts) == ((3,), ("postgresql",), 2, ("takeover",))
    assert plan_of("--quick", "--runner-kills", "2").runner_kills == 2
    assert plan_of("--runner-kills", "0").runner_kills == 0


def test_lease_timings_the_lease_loop_would_refuse_are_refused(capsys):
    assert main(["--lease-renew-s", "2", "--lease-ttl-s", "4"]) == 2
    assert "must be more than twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--writers", "0"], ["--write-s", "-1"], ["--quick", "--smoke"], ["--only", "x"], ["--runner-kills", "-1"]]
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_order_is_checked_per_camera():
    assert in_order_per_camera([("a", 1), ("b", 2), ("a", 3), ("b", 5)])
    assert not in_order_per_camera([("a", 3), ("b", 2), ("a", 1)])
    assert spread_ms([]) == "no sample"
    assert spread_ms([0.001, 0.002, 0.010]) == "median 2.0 ms, p95 10.0 ms, max 10.0 ms"


def test_summary_lines_are_key_value():
    runs = [
        WriteRun("sqlite", 1, "alert", writes=100, elapsed_s=2.0, latencies_s=[0.001, 0.003], verify_ok=True),
        WriteRun("sqlite", 2, "renew", writes=50, elapsed_s=1.0, latencies_s=[0.002], verify_ok=True),
    ]
    lines = summary_lines(runs, {"sqlite": [3.0, 4.0, 9.0]}, {"sqlite": {"webhook": [0.1, 0.2]}})
    assert "sqlite_alerts_per_s_1_writers: 50.0" in lines
    assert "sqlite_renewals_per_s_2_writers: 50.0" in lines
    assert "sqlite_verify_ok: yes" in lines
    assert "sqlite_takeover_s_median: 4.00" in lines and "sqlite_takeover_s_max: 9.00" in lines
    assert "sqlite_webhook_delivery_ms_p50: 150.0" in lines


def test_help_runs():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--smoke" in done.stdout and "--quick" in done.stdout


def test_smoke_run_measures_every_part_on_sqlite():
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = dict(re.findall(r"^(\w+): (\S+)$", done.stdout, flags=re.MULTILINE))
    assert figures["sqlite_verify_ok"] == "yes"
    assert float(figures["sqlite_alerts_per_s_2_writers"]) > 0
    assert float(figures["sqlite_renewals_per_s_2_writers"]) > 0
    # a killed node's cameras are taken over once its lease (ttl 1.2 s) expires, not before
    assert 0.5 < float(figures["sqlite_takeover_s_median"]) < 15.0
    assert float(figures["sqlite_webhook_delivery_ms_p50"]) > 0
    assert re.search(
        r"webhook +10/10 alerts received, in order per camera: yes, duplicates 0, bad signatures 0", done.stdout
    )
    assert "audit chain intact" in done.stdout and "postgresql" not in done.stdout.lower()
