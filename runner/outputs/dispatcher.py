"""The dispatcher: one thread per destination reads the outbox rows after the destination's cursor, in id order,
delivers each and moves the cursor once it was acknowledged.

- At least once: a row is acknowledged before its cursor moves; a crash between the two sends it again (the
  receiver deduplicates on the alert id and the event). In order per camera: rows are delivered in id order, one
  at a time, and a failed row is retried before any later one.
- Nothing lost: a destination down for minutes keeps its cursor, its rows wait in the register, and it gets them
  all when it returns (capped exponential backoff between attempts). Each destination has its own thread: one
  down does not hold the others back.
- A gap in the ids (a transaction that rolled back after taking an id, a purged alert) is waited for
  GAP_GRACE_S, in case the row is still being committed, then passed.
- Test alerts go only where `include_tests` is set; rows of a restricted alert are skipped (see outbox).
- Only where `should_run()` says so (one node of a site holds the dispatching duty); by default always.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from runner.config.site import SiteConfig
from runner.core.errors import VigieError
from runner.outputs.base import Backoff, DeliveryError, Destination
from runner.outputs.mqtt import NODE_BROKER_ENV, MqttDestination, node_broker
from runner.outputs.webhook import WebhookDestination
from runner.register import Register
from runner.register.outbox import Outbox, OutboxEntry

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often an idle destination looks for new rows: well under the 1 s an alert may take
GAP_GRACE_S = 3.0
BATCH_ROWS = 100


def destinations_of(config: SiteConfig, node: str) -> list[Destination]:
    """The destinations a site config names; the node's VIGIE_MQTT_URL, when set, names its broker instead.

    Args:
        config: the site config.
        node: this node's name (the MQTT status topic).

    Returns:
        The MQTT broker (connecting in the background) and each webhook, in config order.

    Raises:
        ConfigError: an ${ENV} placeholder names a variable that is not set.
    """
    found: list[Destination] = [
        WebhookDestination(hook, f"outputs.webhooks[{i}]") for i, hook in enumerate(config.outputs.webhooks)
    ]
    broker, password = node_broker(config.outputs.mqtt, os.environ.get(NODE_BROKER_ENV))
    if broker is not None:
        found.insert(0, MqttDestination(broker, config.site, node, password))
    return found


class Dispatcher:
    """Delivers a register's outbox to its destinations, one thread each, until `stop()`."""

    def __init__(
        self,
        register: Register,
        destinations: list[Destination],
        *,
        should_run: Callable[[], bool] = lambda: True,
        poll_s: float = POLL_S,
        gap_grace_s: float = GAP_GRACE_S,
    ):
        """A dispatcher (`start()` starts it).

        Args:
            register: the register whose outbox is delivered.
            destinations: where to.
            should_run: whether this node dispatches now (asked before each batch).
            poll_s: how often an idle destination looks for new rows, seconds.
            gap_grace_s: how long a gap in the row ids is waited for before it is passed, seconds.
        """
        self.outbox = Outbox(register.database)
        self.destinations = destinations
        self.should_run = should_run
        self.poll_s = poll_s
        self.gap_grace_s = gap_grace_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.delivered: dict[str, int] = {d.name: 0 for d in destinations}  # rows acknowledged by this process

    def start(self) -> Dispatcher:
        """Open each destination's cursor and start its thread.

        Returns:
            The dispatcher itself.
        """
        for destination in self.destinations:
            cursor = self.outbox.open_destination(destination.name, include_tests=destination.include_tests)
            thread = threading.Thread(
                target=self._serve, args=(destination, cursor), name=f"outbox-{destination.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def backlog(self) -> dict[str, int]:
        """Rows each destination is still owed.

        Returns:
            Destination name -> pending rows.
        """
        return {row["destination"]: int(row["pending"]) for row in self.outbox.backlog()}

    def drain(self, timeout_s: float) -> bool:
        """Wait until every destination has been delivered everything it is owed.

        Args:
            timeout_s: the longest wait, seconds.

        Returns:
            Whether nothing is owed any more.
        """
        deadline = time.monotonic() + timeout_s
        names = {d.name for d in self.destinations}
        while True:
            if not any(pending for name, pending in self.backlog().items() if name in names):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll_s)

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop the threads (after up to `drain_s` seconds of delivering what is owed) and close the destinations.
        What is not delivered stays owed: the next start delivers it.

        Args:
            drain_s: how long to let the backlog drain first, seconds.
        """
        if drain_s > 0 and self.should_run():  # a node without the dispatching duty has nothing to drain
            try:
                self.drain(drain_s)
            except VigieError as exc:
                log.warning("outbox: not drained before stopping: %s", exc)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15.0)
        for destination in self.destinations:
            destination.close()

    # -- one destination ---------------------------------------------------------------------------
    def _serve(self, destination: Destination, cursor: int) -> None:
        backoff = Backoff(destination.max_backoff_s)
        gaps: dict[int, float] = {}  # first missing id -> when it was first seen missing
        while not self._stop.is_set():
            try:
                if not self.should_run():
                    self._stop.wait(self.poll_s)
                    continue
                cursor, wait_s = self._deliver_batch(destination, cursor, gaps, backoff)
            except Exception as exc:  # the register is unreachable, a bug: keep the thread, retry later
                log.error("outbox %s: %s", destination.name, exc)
                wait_s = backoff.next_wait_s()
            self._stop.wait(wait_s)

    def _deliver_batch(
        self, destination: Destination, cursor: int, gaps: dict[int, float], backoff: Backoff
    ) -> tuple[int, float]:
        """Deliver the rows after `cursor` up to the first failure or unexpired gap.

        Returns:
            (the new cursor, seconds to wait before the next batch).
        """
        cursor = max(cursor, self.outbox.cursor(destination.name))  # the duty may have been on another node
        entries = self.outbox.after(cursor, BATCH_ROWS)
        moved = saved = cursor
        try:
            for entry in self._ready(entries, cursor, gaps):
                if self._stop.is_set() or not self.should_run():  # the duty lost: the next holder goes on
                    break
                if self._wanted(destination, entry):
                    try:
                        destination.deliver(entry)
                    except DeliveryError as exc:
                        # Once per outage, not once per attempt: `vigie status` shows the latest error.
                        log.log(
                            logging.DEBUG if backoff.failures else logging.WARNING, "outbox row %d: %s", entry.id, exc
                        )
                        self.outbox.failed(destination.name, str(exc))
                        return moved, backoff.next_wait_s()
                    self.delivered[destination.name] += 1
                    backoff.reset()
                    self.outbox.advance(destination.name, entry.id)  # acknowledged: never sent again
                    saved = entry.id
                moved = entry.id  # a skipped row (test, restricted) moves the cursor too
        finally:
            if moved != saved:
                self.outbox.advance(destination.name, moved)
        full = len(entries) == BATCH_ROWS and moved == entries[-1].id
        return moved, 0.0 if full else self.poll_s

    @staticmethod
    def _wanted(destination: Destination, entry: OutboxEntry) -> bool:
        return not entry.restricted and (destination.include_tests or not entry.is_test)

    def _ready(self, entries: list[OutboxEntry], cursor: int, gaps: dict[int, float]) -> list[OutboxEntry]:
        """The entries up to the first gap in the ids still within its grace time."""
        ready, expected = [], cursor + 1
        now = time.monotonic()
        for entry in entries:
            if entry.id != expected:
                first_seen = gaps.setdefault(expected, now)
                if now - first_seen < self.gap_grace_s:
                    break
                log.info("outbox: rows %d..%d never appeared (rolled back or purged); passed", expected, entry.id - 1)
                gaps.pop(expected, None)
            ready.append(entry)
            expected = entry.id + 1
        return ready


def start_dispatcher(
    register: Register, config: SiteConfig, *, node: str | None = None, should_run: Callable[[], bool] = lambda: True
) -> Dispatcher | None:
    """Start pushing a site's outbox to its configured outputs.

    Args:
        register: the register.
        config: the site config (its `outputs`).
        node: this node's name (default: the host name).
        should_run: whether this node dispatches now (the site's dispatching duty); default always.

    Returns:
        The running dispatcher, or None when neither the site nor the node (VIGIE_MQTT_URL) names an output.

    Raises:
        ConfigError: an output's ${ENV} placeholder names a variable that is not set.
    """
    if not config.outputs.configured and not os.environ.get(NODE_BROKER_ENV):
        return None
    destinations = destinations_of(config, node or socket.gethostname())
    return Dispatcher(register, destinations, should_run=should_run).start()
