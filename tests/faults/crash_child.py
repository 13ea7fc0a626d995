"""A runner to be killed: `python -m tests.faults.crash_child SITE_YAML DB` is a small fork server.

It imports the runner once, then for every `run` line on stdin forks a child that runs the real
`Runner` (live loop over a looping clip, as fast as it can) with a scripted detector whose person
steps across the tripwire on every frame, so the tripwire rule raises an alert (snapshot + register
row + audit row) every two or three frames, tens of alerts a second. It prints `pid N` for each child and
`exit N STATUS` when that child is gone. The test kills children with SIGKILL at random moments.

Forking from one warm process keeps each restart at a few milliseconds instead of seconds of
imports: the child is still a separate process that dies abruptly, with its own register handle.
"""

from __future__ import annotations

import os
import sys

# The tripwire rule with no cooldown: every crossing of the line `gate` (x = 0.3) is an alert.
CROSSING_RULE = {"kind": "zone_intrusion", "id": "gate-crossing", "line": "gate", "cooldown_s": 0.0}


def crossing_script(call: int) -> list:
    """A wide person whose anchor steps from x = 0.35 to 0.25 and back: it crosses on every frame
    while its boxes overlap enough for the tracker to keep one track."""
    from tests.helpers import box_at

    return [(box_at(0.25 if call % 2 else 0.35, 0.9, height=0.4, width=0.3), "person", 0.9)]


def run_child(site_yaml: str, db: str) -> None:
    from runner.config.loading import load_config
    from runner.register import Register
    from runner.service.lifecycle import Runner, RunOptions
    from tests.helpers import FakePool, ScriptedDetector

    detector = ScriptedDetector(crossing_script)
    register = Register(db)
    runner = Runner(
        load_config(site_yaml),
        register,
        RunOptions(mode="live", realtime=False, retention=False),
        pool=FakePool(detector),
    )
    runner.run()  # until killed


def serve(site_yaml: str, db: str) -> None:
    import runner.service.lifecycle  # noqa: F401 - warm imports, shared by every child
    import tests.helpers  # noqa: F401

    for line in sys.stdin:
        if line.strip() != "run":
            break
        pid = os.fork()
        if pid == 0:
            try:
                run_child(site_yaml, db)
            finally:
                os._exit(0)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
