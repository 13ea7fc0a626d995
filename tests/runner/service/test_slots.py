"""The frame slot between a capture thread and the analysis loop: live keeps the newest frames, replay every one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from runner.service.slots import RESTART, FrameSlot
from runner.sources.capture import Frame


def _frame(i):
    return Frame(
        "cam-01", i, i / 5, datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=i / 5), np.zeros((2, 2, 3), np.uint8)
    )


def _drain(slot):
    out = []
    while (item := slot.take()) is not None:
        out.append("RESTART" if item is RESTART else item.index)
    return out


def test_live_slot_keeps_the_newest_frames_and_never_loses_a_restart():
    stop = threading.Event()
    slot = FrameSlot(live=True, wakeup=threading.Event())
    for i in range(5):
        slot.put(_frame(i), stop)
    assert _drain(slot) == [3, 4] and slot.dropped == 3
    slot.put(_frame(5), stop)
    slot.put(RESTART, stop)  # the stream looped: what was queued belongs to the old pass
    for i in range(6, 10):
        slot.put(_frame(i), stop)
    assert _drain(slot) == ["RESTART", 8, 9]
    slot.put(_frame(10), stop)
    assert slot.drain() == 1 and slot.take() is None


def test_replay_slot_keeps_every_frame_in_order():
    stop = threading.Event()
    slot = FrameSlot(live=False, wakeup=threading.Event())
    slot.put(_frame(0), stop)
    slot.put(RESTART, stop)
    slot.put(_frame(1), stop)
    assert _drain(slot) == [0, "RESTART", 1] and slot.dropped == 0
