"""The alert writer: commits in order off the analysis thread, keeps what the register refuses, never drops."""

from __future__ import annotations

import threading
import time

from runner.core.errors import StoreError
from runner.service.writer import AlertWriter


def test_writer_commits_in_order_and_reports_failures_without_stopping():
    done, errors = [], []
    writer = AlertWriter(on_error=lambda cid, exc: errors.append((cid, str(exc))), capacity=4)
    for i in range(50):
        writer.submit("cam-01", (lambda i=i: done.append(i)) if i != 7 else (lambda: 1 / 0))
    writer.close()
    assert done == [i for i in range(50) if i != 7]
    assert errors == [("cam-01", "division by zero")]


def test_writer_keeps_alerts_the_register_refuses_and_stores_them_when_it_accepts_again():
    disk_full, done, errors = threading.Event(), [], []
    disk_full.set()

    def store(i):
        if disk_full.is_set():
            raise StoreError("register var/vigie.db: cannot write (database or disk is full)")
        done.append(i)

    writer = AlertWriter(on_error=lambda cid, exc: errors.append(str(exc)), retry_s=0.05)
    for i in range(3):
        writer.submit("cam-01", lambda i=i: store(i))
    deadline = time.monotonic() + 5
    while writer.retained < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.retained == 3 and done == [] and len(errors) == 3
    disk_full.clear()  # space is back: the retry stores them, in order, without a new alert to push them
    while done != [0, 1, 2] and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.submit("cam-01", lambda: store(3))
    writer.close()
    assert done == [0, 1, 2, 3] and writer.retained == 0 and writer.given_up == 0


def test_writer_retry_buffer_is_bounded():
    def refused():
        raise StoreError("register: cannot write (disk I/O error)")

    writer = AlertWriter(on_error=lambda cid, exc: None, retry_s=60, max_retained=4)
    for _ in range(10):
        writer.submit("cam-01", refused)
    writer.close()
    assert writer.retained == 4 and writer.given_up == 6


def test_writer_queue_is_bounded_and_blocks_rather_than_drops():
    release, started, done = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        release.wait(10)
        done.append("slow")

    writer = AlertWriter(on_error=lambda cid, exc: None, capacity=2)
    writer.submit("cam-01", slow)
    started.wait(5)
    writer.submit("cam-01", lambda: done.append(1))
    writer.submit("cam-01", lambda: done.append(2))  # the queue is now full
    third = threading.Thread(target=writer.submit, args=("cam-01", lambda: done.append(3)))
    third.start()
    third.join(0.3)
    assert third.is_alive() and writer.waits == 1  # the analysis waits for room
    release.set()
    third.join(5)
    writer.close()
    assert done == ["slow", 1, 2, 3]
