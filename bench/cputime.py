"""CPU time per kind of thread of the benchmark's own process (Linux /proc), for "where the time goes".

Wall time per stage says what the analysis waited for; on 2 saturated cores the question is who burns
the CPU. Threads come and go (a capture thread and its FFmpeg decoders end with their clip), so the
sampler reads /proc/self/task every `every_s` and keeps each thread's last CPU time.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

GROUPS = (
    "inference workers",
    "analysis thread",
    "detector thread",
    "decoders (FFmpeg)",
    "capture threads",
    "alert writer",
    "other",
)


def group_of(native_name: str, python_name: str | None, is_main: bool) -> str:
    """The kind of a thread from its kernel name (`comm`) and, for Python threads, their Python name."""
    if is_main:
        return "analysis thread"
    if python_name is not None:
        for prefix, group in (
            ("detect", "detector thread"),
            ("capture-", "capture threads"),
            ("alert-writer", "alert writer"),
        ):
            if python_name.startswith(prefix):
                return group
        return "other"
    if native_name.startswith("av:"):
        return "decoders (FFmpeg)"
    return "inference workers"  # native threads of the process: OpenVINO's (or torch's) pool


def _cpu_s(tid: str) -> tuple[str, float] | None:
    try:
        with open(f"/proc/self/task/{tid}/comm") as handle:
            comm = handle.read().strip()
        with open(f"/proc/self/task/{tid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:  # the thread ended between the listing and the read
        return None
    return comm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class ThreadCpuSampler:
    """Samples every thread's CPU time in the background while in its `with` block; `groups()` sums, per
    group, what each thread used since the block began."""

    def __init__(self, every_s: float = 0.25):
        self.every_s = every_s
        self._last: dict[str, tuple[str, float]] = {}  # tid -> (group, cpu s)
        self._base: dict[str, float] = {}  # tid -> cpu s when the sampler started (loading, warm-up)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> ThreadCpuSampler:
        self.sample()
        self._base = {tid: seconds for tid, (_, seconds) in self._last.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        python_names = {str(t.native_id): t.name for t in threading.enumerate() if t.native_id is not None}
        main = str(threading.main_thread().native_id)
        for tid in os.listdir("/proc/self/task"):
            found = _cpu_s(tid)
            if found is None or python_names.get(tid) == "cpu-sampler":
                continue
            comm, seconds = found
            group = self._last[tid][0] if tid in self._last else group_of(comm, python_names.get(tid), tid == main)
            self._last[tid] = (group, seconds)

    def groups(self) -> dict[str, float]:
        totals: Counter[str] = Counter()
        for tid, (group, seconds) in self._last.items():
            totals[group] += seconds - self._base.get(tid, 0.0)
        return {group: round(totals[group], 3) for group in GROUPS if totals[group]}
