"""A runner node among several sharing one site's cameras: its lease loop (`NodeCluster`).

`vigie run CONFIG --db ... --node NAME --max-cameras N` starts one `NodeCluster` beside the `Runner`. Its
thread, every `renew_s`:

1. heartbeats the node's row (`nodes`);
2. renews each lease it holds; a lease whose renewal is refused (taken over) is lost at once, and one it
   could not renew for `ttl_s - renew_s` seconds (database lost, node hung) is lost *locally* before it can
   expire in the database, so the node stops analysing the camera before another node may take it;
3. takes free or expired cameras up to its fair share (the site's enabled cameras over the nodes alive,
   within `--max-cameras`), then orphans (free for a whole `ttl_s`: every node is at its share) up to its
   capacity, and gives one camera back per round while it holds two more than a node alive with room (so that
   three nodes started one after the other end up with 2/2/2 of six cameras, 3/2/2 of seven); after losing the
   register, it takes nothing for a ttl, only renews its own leases: the others, back too, renew theirs;
4. takes the site-wide duties (the retention purge, the outbox dispatch) when free: one node runs each.

The runner's analysis loop reads `wanted()` on every round: it starts a pipeline for each camera there that
it does not run once the lease thread agrees (`claim`: the lease is still wanted), stops each one it runs
that is no longer there, and says so (`camera_stopped`): a lease is given back only once its camera is
stopped, or was never started. Each pipeline stores its alerts under its lease
(`Register.owned_by`): an alert of a lease that was taken over is refused in its own transaction.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from runner.core.errors import UsageError
from runner.register import Register
from runner.register.leases import OUTBOX_DUTY, PURGE_DUTY, Lease, is_duty

log = logging.getLogger(__name__)
DEFAULT_RENEW_S = 2.0
DEFAULT_TTL_S = 10.0
# A node whose analysis loop made no progress for max(ttl / 2, this) seconds (a hung inference) stops renewing
# its leases, so that the other nodes take its cameras within about 1.5 ttl. Not shorter: loading a model for a
# camera just taken blocks the loop for a few seconds, and that is no hang.
MIN_LOOP_STALL_S = 5.0


@dataclass(frozen=True)
class ClusterOptions:
    """A node's name, capacity and lease timings (`vigie run --node --max-cameras --lease-renew-s --lease-ttl-s`)."""

    node: str
    max_cameras: int
    renew_s: float = DEFAULT_RENEW_S
    ttl_s: float = DEFAULT_TTL_S

    def __post_init__(self) -> None:
        """Refuse timings that cannot keep the promise that a node stops before its lease expires.

        Raises:
            UsageError: an empty name, a capacity below 1, a renewal period not positive, or a ttl not above
                twice the renewal period (one renewal may fail without losing the camera).
        """
        if not self.node.strip() or any(c.isspace() for c in self.node) or len(self.node) > 64:
            raise UsageError(f"--node: a name of 1 to 64 characters without spaces, not {self.node!r}")
        if self.max_cameras < 1:
            raise UsageError(f"--max-cameras must be at least 1, not {self.max_cameras}")
        if not self.renew_s > 0:
            raise UsageError(f"--lease-renew-s must be above 0 s, not {self.renew_s}")
        if not self.ttl_s > 2 * self.renew_s:
            raise UsageError(
                f"--lease-ttl-s ({self.ttl_s} s) must be more than twice --lease-renew-s ({self.renew_s} s)"
            )

    @property
    def hold_s(self) -> float:
        """Seconds a node keeps analysing a camera after the start of its last successful renewal.

        Returns:
            ttl_s - renew_s: the lease then still has renew_s left in the database, the margin in which the
            analysis loop stops the camera.
        """
        return self.ttl_s - self.renew_s


@dataclass
class _Held:
    lease: Lease
    renewed_mono: float  # monotonic time at the *start* of its last successful acquisition or renewal
    giving_back: bool = False  # above our fair share: stop it, then release it
    lost: bool = False  # taken over or past hold_s: stop it
    taken_over: bool = False  # its renewal was refused: another node holds it now, never renew it
    started: bool = False  # the analysis loop runs it (`claim` .. `camera_stopped`); lost and not started: dormant,
    # revived by a renewal if nobody took it over meanwhile


class NodeCluster:
    """One node's leases on its site's cameras and duties, kept by its own thread (see the module's docstring)."""

    def __init__(
        self,
        register: Register,
        site: str,
        camera_ids: Iterable[str],
        options: ClusterOptions,
        *,
        duties: Iterable[str] = (PURGE_DUTY, OUTBOX_DUTY),
        config: tuple[int, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        """A node, not started yet.

        Args:
            register: the shared register (PostgreSQL, or one machine's SQLite file).
            site: the site whose cameras the nodes share.
            camera_ids: the cameras this node may analyse (the enabled ones, or those of `--camera`).
            options: name, capacity, timings.
            duties: the site-wide duties this node may take.
            config: the revision and sha256 of the site config this node runs (recorded in its row).
            monotonic: the clock of the local deadlines (tests move it).
        """
        self.register = register
        self.site = site
        self.camera_ids = list(camera_ids)
        self.options = options
        self.duties = list(duties)
        self.config = config
        self._newer_config_seen: int | None = None  # the newest revision another node runs, once warned
        self.monotonic = monotonic
        # Called on the lease thread when this node gains (True) or loses (False) a duty.
        self.on_duty: Callable[[str, bool], None] | None = None
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db_down_since: float | None = None
        self._take_after = 0.0  # monotonic time before which this node takes no lease (after an outage)
        # Seconds since the analysis loop last made progress (the service's notifier), None: not watched.
        self.loop_silent_s: Callable[[], float] | None = None
        self._loop_stalled = False

    @property
    def node(self) -> str:
        """This node's name.

        Returns:
            The `--node` name.
        """
        return self.options.node

    # -- the analysis loop's side ---------------------------------------------------------------------
    def wanted(self) -> dict[str, Lease]:
        """The cameras this node must analyse now, each with the lease its alerts are stored under.

        Returns:
            Camera id -> lease, for the leases held, not lost, not being given back, within hold_s.
        """
        now = self.monotonic()
        with self._lock:
            return {
                cid: held.lease
                for cid, held in self._held.items()
                if not is_duty(cid)
                and not held.lost
                and not held.giving_back
                and now < held.renewed_mono + self.options.hold_s
            }

    def claim(self, camera_id: str, token: int) -> bool:
        """The analysis loop is about to start a camera under `token`: agreed only while the lease is still
        wanted, so that a lease is never released while its camera starts.

        Args:
            camera_id: the camera.
            token: the token of the lease `wanted()` gave for it.

        Returns:
            True: start it (and call `camera_stopped` once it stops, or if starting it fails); False: do not.
        """
        now = self.monotonic()
        with self._lock:
            held = self._held.get(camera_id)
            if (
                held is None
                or held.lease.token != token
                or held.lost
                or held.giving_back
                or now >= held.renewed_mono + self.options.hold_s
            ):
                return False
            held.started = True
            return True

    def camera_stopped(self, camera_id: str, token: int) -> None:
        """The analysis loop stopped a camera it ran under `token` (or could not start it): its lease may now
        be released, or kept dormant.

        Args:
            camera_id: the camera.
            token: the token of the lease it ran under.
        """
        with self._lock:
            held = self._held.get(camera_id)
            if held is not None and held.lease.token == token:
                held.started = False

    def holds_duty(self, duty: str) -> bool:
        """Whether this node runs a site-wide duty now (give `should_run(duty)` to the duty's scheduler).

        Args:
            duty: PURGE_DUTY or OUTBOX_DUTY.

        Returns:
            True while its lease is held and within hold_s.
        """
        now = self.monotonic()
        with self._lock:
            held = self._held.get(duty)
            return held is not None and not held.lost and now < held.renewed_mono + self.options.hold_s

    def should_run(self, duty: str) -> Callable[[], bool]:
        """A callable for a duty's scheduler: run only on the node that holds the duty.

        Args:
            duty: PURGE_DUTY or OUTBOX_DUTY.

        Returns:
            A function without arguments that says whether to run now.
        """
        return lambda: self.holds_duty(duty)

    # -- the lease thread -----------------------------------------------------------------------------
    def start(self) -> None:
        """Record the node, take its first leases, then keep them on its own thread."""
        self.register.leases.join(
            self.node,
            self.site,
            self.options.max_cameras,
            pid=os.getpid(),
            host=socket.gethostname(),
            ttl_s=self.options.ttl_s,
            config=self.config,
        )
        self.tick()
        self._thread = threading.Thread(target=self._run, name=f"leases-{self.node}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the lease thread, then release every lease and mark the node stopped (best effort: a
        database that is down lets them expire instead)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.options.ttl_s)
        with self._lock:
            duties = [cid for cid, held in self._held.items() if is_duty(cid) and not held.lost]
            self._held.clear()
        for duty in duties:
            self._duty_changed(duty, False)
        try:
            self.register.leases.leave(self.node)
        except Exception as exc:  # a node that stops must stop, whatever the database says
            log.warning(
                "node %s: could not release its leases (they expire in %.0f s): %s", self.node, self.options.ttl_s, exc
            )

    def _run(self) -> None:
        while not self._stop.wait(self.options.renew_s):
            self.tick()

    def tick(self) -> None:
        """One round of the lease loop: heartbeat, renew, release, take (see the module's docstring).

        A database that cannot be reached is logged once per outage; the leases then run out locally.
        """
        if self._loop_is_stalled():
            self._expire_locally()  # no renewal: the leases run out and the other nodes take the cameras
            return
        try:
            self._expire_locally()
            self.register.leases.heartbeat(self.node)
            if self._db_down_since is not None:
                # Every node lost the register too: leave them a ttl to renew their own leases again before
                # taking any camera (they all look dead for now: each would take every camera).
                self._take_after = self.monotonic() + self.options.ttl_s
                log.warning(
                    "node %s: register reachable again after %.1f s", self.node, self.monotonic() - self._db_down_since
                )
                self._db_down_since = None
            self._release_stopped()  # first: a camera stopped for an outage may come back in this round's renewal
            self._renew()
            if self.monotonic() >= self._take_after:
                self._take()
                self._duty_leases()
        except Exception as exc:  # the lease loop outlives any database failure, and says so
            if self._db_down_since is None:
                self._db_down_since = self.monotonic()
                log.error(
                    "node %s: cannot reach the register (leases run out in %.0f s): %s",
                    self.node,
                    self.options.hold_s,
                    exc,
                )
            self._expire_locally()

    def _loop_is_stalled(self) -> bool:
        """Whether the analysis loop has hung (see MIN_LOOP_STALL_S); logged once per stall."""
        if self.loop_silent_s is None:
            return False
        silent_s = self.loop_silent_s()
        stalled = silent_s > max(self.options.ttl_s / 2, MIN_LOOP_STALL_S)
        if stalled and not self._loop_stalled:
            log.error(
                "node %s: the analysis loop made no progress for %.0f s: leases no longer renewed", self.node, silent_s
            )
        elif not stalled and self._loop_stalled:
            log.warning("node %s: the analysis loop runs again: renewing leases", self.node)
        self._loop_stalled = stalled
        return stalled

    def _expire_locally(self) -> None:
        """Leases not renewed for hold_s are lost here first: the camera stops before anyone else may take it."""
        now = self.monotonic()
        lost_duties = []
        with self._lock:
            for cid, held in self._held.items():
                if not held.lost and now >= held.renewed_mono + self.options.hold_s:
                    held.lost = True
                    log.warning(
                        "node %s: lease on %s not renewed for %.1f s: stopping it", self.node, cid, self.options.hold_s
                    )
                    if is_duty(cid):
                        lost_duties.append(cid)
        for duty in lost_duties:
            self._forget(duty)
            self._duty_changed(duty, False)

    def _renew(self) -> None:
        """Renew the leases held, and try the dormant ones: a camera stopped because the register was out of
        reach comes back under the same token when nobody took it meanwhile (its alerts held back by the
        writer then still pass the fencing check), else it is forgotten."""
        with self._lock:
            renewable = [
                (cid, held.lease)
                for cid, held in self._held.items()
                if not held.taken_over and (not held.lost or not held.started)
            ]
        if not renewable:
            return
        started = self.monotonic()
        results = self.register.leases.renew_all([lease for _, lease in renewable], self.options.ttl_s)
        for (cid, lease), renewed in zip(renewable, results):
            if renewed is None and is_duty(cid):  # another node runs the duty now
                self._forget(cid)
                self._duty_changed(cid, False)
                continue
            with self._lock:
                held = self._held.get(cid)
                if held is None or held.lease.token != lease.token or held.taken_over:
                    continue
                if renewed is None:
                    held.lost = held.taken_over = True
                    log.warning("node %s: lease on %s taken over (token %d): stopping it", self.node, cid, lease.token)
                    if not held.started:
                        del self._held[cid]
                    continue
                if held.lost:
                    log.warning(
                        "node %s: lease on %s renewed again (token %d): restarting it", self.node, cid, lease.token
                    )
                held.lease, held.renewed_mono, held.lost = renewed, started, False

    def _release_stopped(self) -> None:
        """Leases whose camera does not run (stopped, or never started): released when given back, forgotten
        when taken over, kept dormant when lost past hold_s (see `_renew`)."""
        with self._lock:
            given_back = []
            for cid, held in list(self._held.items()):
                if held.started or is_duty(cid):
                    continue
                if held.giving_back:
                    given_back.append(held.lease)
                    del self._held[cid]
                elif held.taken_over:
                    del self._held[cid]
        for lease in given_back:
            self.register.leases.release(lease, "rebalanced")  # refused harmlessly when already taken over

    def _take(self) -> None:
        """Fair share first, then orphans up to capacity; one camera given back per round when unbalanced."""
        nodes = self.register.leases.nodes(self.site)
        leases = {row["camera_id"]: row for row in self.register.leases.leases(self.site)}
        alive = [n for n in nodes if n["name"] == self.node or n["alive"]]
        self._warn_if_config_behind(alive)
        share = min(self.options.max_cameras, math.ceil(len(self.camera_ids) / max(1, len(alive))))
        # Never two cameras more than a node alive with room: nodes starting together take one camera each
        # per round instead of the first one taking them all, and a camera given back goes to the others.
        room = [len(n["cameras"]) for n in alive if n["name"] != self.node and len(n["cameras"]) < n["capacity"]]
        limit = min(share, min(room) + 1) if room else share
        with self._lock:
            mine = [cid for cid, held in self._held.items() if not is_duty(cid) and not held.giving_back]
            busy = set(self._held)
        free = [cid for cid in self._preferred(self.camera_ids) if cid not in busy and _is_free(leases.get(cid))]
        for cid in free:
            if len(mine) >= limit:
                break
            if self._acquire(cid):
                mine.append(cid)
        for cid in free:  # orphans: free for a whole ttl, every node alive at its share
            if len(mine) >= self.options.max_cameras:
                break
            if cid not in mine and self._acquire(cid, free_for_s=self.options.ttl_s):
                mine.append(cid)
        # Two cameras more than a node with room: one moves (7 cameras on 3 nodes settle at 3/2/2, not 3/3/1).
        needy = [
            n
            for n in alive
            if n["name"] != self.node and len(n["cameras"]) + 2 <= len(mine) and len(n["cameras"]) < n["capacity"]
        ]
        if needy:
            self._give_back(mine[-1])

    def _warn_if_config_behind(self, alive: list[dict]) -> None:
        """A node still on an older site config than another node alive says so, once per newer revision
        (a node reloads its own site file when it changes: this one's copy was not updated, or was refused)."""
        mine = self.config[0] if self.config else None
        newest = max((n["config_revision"] for n in alive if n["config_revision"] is not None), default=None)
        if mine is not None and newest is not None and newest > mine and newest != self._newer_config_seen:
            self._newer_config_seen = newest
            log.warning(
                "node %s runs config revision %d, another node of the site runs revision %d: restart this node "
                "on the new site file",
                self.node,
                mine,
                newest,
            )

    def _duty_leases(self) -> None:
        for duty in self.duties:
            with self._lock:
                if duty in self._held:
                    continue
            if self._acquire(duty):
                self._duty_changed(duty, True)

    def _acquire(self, cid: str, free_for_s: float = 0.0) -> bool:
        started = self.monotonic()
        lease = self.register.leases.acquire(self.site, cid, self.node, self.options.ttl_s, free_for_s=free_for_s)
        if lease is None:
            return False
        with self._lock:
            self._held[cid] = _Held(lease, started)
        log.info("node %s: took %s (token %d)", self.node, cid, lease.token)
        return True

    def _give_back(self, cid: str) -> None:
        with self._lock:
            if cid in self._held:
                self._held[cid].giving_back = True
        log.info("node %s: gives %s back (two cameras more than another node)", self.node, cid)

    def _forget(self, cid: str) -> None:
        with self._lock:
            self._held.pop(cid, None)

    def _duty_changed(self, duty: str, held: bool) -> None:
        log.info("node %s: %s duty %s", self.node, "runs" if held else "no longer runs", duty)
        if self.on_duty is not None:
            try:
                self.on_duty(duty, held)
            except Exception:  # a duty that fails to start or stop must not stop the lease loop
                log.exception("node %s: duty %s could not be %s", self.node, duty, "started" if held else "stopped")

    def _preferred(self, camera_ids: list[str]) -> list[str]:
        """This node's own order of the cameras (a stable hash of node and camera), so that nodes starting
        together try different cameras first instead of all racing for the first one."""
        return sorted(camera_ids, key=lambda cid: zlib.crc32(f"{self.node}/{cid}".encode()))


def _is_free(row: dict | None) -> bool:
    return row is None or row["node"] is None or row["expires_utc"] <= row["now_utc"]
