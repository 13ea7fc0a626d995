"""A node's watch on its site file (`vigie run --node`): a new revision reaches every node without a restart.

At each control poll the runner asks `ConfigWatch.poll()`. A look costs one `stat`: the file is examined only
when its mtime or size changed, and only once they held still for one poll (a copy still being written is not
read half-way). Its sha256 then tells a touched file from a new one. A new file that loads and validates is
audited (`config_reloaded`, old and new revision and sha256) and the runner stops as on SIGTERM (the writer
drains, the leases are released) with the stop reason `CONFIG_CHANGED`; `vigie run` then re-executes its own
command line (`reexecute`): same PID, same environment, so systemd's `Type=notify` unit sees a reload, not a
crash. Nodes reload one at a time: a node takes the site's reload turn (a meta row naming it, until it runs
again or for RELOAD_TURN_S at most) before it stops, so that the nodes of a shared site file do not all stop
at once; the others keep polling and go in turn, and their cameras' leases move to the nodes running meanwhile.
A new file that does not validate is refused: the node keeps running the revision it has, logs one line
naming the problem, audits `config_rejected` once per distinct file hash, and leaves a meta row that
`vigie status` shows until the node next starts on a valid file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

from runner.config.loading import LoadedConfig, load_config, redact
from runner.core.errors import ConfigError, VigieError
from runner.inference.modelref import file_sha256
from runner.register import Register, iso, utc_now
from runner.register.leases import database_now

log = logging.getLogger(__name__)
CONFIG_CHANGED = "config changed"  # the stop reason of a node that re-executes itself on its new site file
REJECTED_META_PREFIX = "config_rejected:"  # + node name: the last site file the node refused (JSON), or ''
PROBLEMS_AUDITED = 10  # a file with thousands of problems gets the first ones in its audit row
RELOAD_TURN_PREFIX = "config_reload_turn:"  # + site: '<expiry, ISO UTC>|<node>' while a node reloads, or ''
# A reload turn not handed back within this long (the node died restarting) lapses: the next node goes.
RELOAD_TURN_S = 60.0


@dataclass(frozen=True)
class _Stamp:
    """What a poll compares: cheap to read, changed by any write that matters."""

    mtime_ns: int
    size: int


def _stamp(path: Path) -> _Stamp | None:
    try:
        stat = path.stat()
    except OSError:  # removed or being replaced: examined once it is back and holds still
        return None
    return _Stamp(stat.st_mtime_ns, stat.st_size)


def rejected_meta_key(node: str) -> str:
    """The meta key where a node leaves the last site file it refused (read by `vigie status`).

    Args:
        node: the node's name.

    Returns:
        The key.
    """
    return REJECTED_META_PREFIX + node


class ConfigWatch:
    """One node's watch on the site file it runs (see the module's docstring)."""

    def __init__(self, running: LoadedConfig, register: Register, node: str, actor: str):
        """A watch on the file `running` was loaded from; the node starts on it, so an earlier refusal is cleared
        (and its reload turn, if it holds one, is handed back at the first poll: the node runs again).

        Args:
            running: the config the node runs (its path is watched).
            register: where the reload and refusals are audited.
            node: the node's name (logs, the refusal's meta key).
            actor: the audit actor (the runner's).
        """
        self.running = running
        self.register = register
        self.node = node
        self.actor = actor
        self._seen = _stamp(running.path)  # the stamp last examined (or the one the node started on)
        self._settling: _Stamp | None = None  # a new stamp waiting to hold still for one poll
        self._rejected: set[str] = set()  # sha256 of the files refused and audited
        self._waiting: LoadedConfig | None = None  # a valid new file, waiting for the site's reload turn
        self._turn_checked = False  # whether the first poll handed back a turn this node took before its exec
        meta_key = rejected_meta_key(node)
        if register.get_meta(meta_key):
            register.set_meta(meta_key, "")

    def poll(self) -> LoadedConfig | None:
        """One look at the site file: a `stat`, and on a change that held still, its hash and validation.

        Returns:
            The new config when the file holds a new valid revision (audited `config_reloaded`: stop and
            re-execute on it), else None (unchanged, touched only, still being written, or refused).
        """
        if not self._turn_checked:
            self._turn_checked = self._hand_back_turn()
        stamp = _stamp(self.running.path)
        if stamp == self._seen:
            self._settling = None
            return self._reload_in_turn(self._waiting) if self._waiting is not None else None
        self._waiting = None
        if stamp != self._settling:  # changed since the last poll: maybe still being written
            self._settling = stamp
            return None
        self._seen, self._settling = stamp, None
        return self._examine()

    def _examine(self) -> LoadedConfig | None:
        path = self.running.path
        try:
            sha256 = file_sha256(path)
        except OSError:
            sha256 = "unreadable"
        if sha256 == self.running.sha256 or sha256 in self._rejected:
            return None
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            self._reject(sha256, exc)
            return None
        if loaded.sha256 == self.running.sha256:  # rewritten back to the running bytes since the hash above
            return None
        return self._reload_in_turn(loaded)

    def _reload_in_turn(self, loaded: LoadedConfig) -> LoadedConfig | None:
        """Reload on `loaded` once this node has the site's reload turn; until then it is polled again."""
        holder = self._take_turn()
        if holder is not None:
            if self._waiting is None:
                log.warning(
                    "node %s: new site file valid: reloading after node %s, which reloads now", self.node, holder
                )
            self._waiting = loaded
            return None
        self._waiting = None
        old, new = self.running, loaded
        log.warning(
            "node %s: site file %s changed: revision %d (sha256 %s) -> %d (sha256 %s): reloading",
            self.node,
            new.path,
            old.config.revision,
            old.sha256[:12],
            new.config.revision,
            new.sha256[:12],
        )
        self._audit(
            "config_reloaded",
            {
                "node": self.node,
                "path": str(new.path),
                "old_revision": old.config.revision,
                "old_sha256": old.sha256,
                "new_revision": new.config.revision,
                "new_sha256": new.sha256,
            },
        )
        return new

    def _reject(self, sha256: str, exc: ConfigError) -> None:
        """Log one line naming the (first) problem; audit it and leave it for `vigie status`, once per file hash."""
        problems = [redact(problem) for problem in exc.problems] or ["invalid"]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        log.error(
            "node %s: new site file %s refused, still running revision %d: %s%s",
            self.node,
            self.running.path,
            self.running.config.revision,
            problems[0],
            more,
        )
        self._rejected.add(sha256)
        details = {
            "node": self.node,
            "path": str(self.running.path),
            "sha256": sha256,
            "running_revision": self.running.config.revision,
            "running_sha256": self.running.sha256,
            "problems": problems[:PROBLEMS_AUDITED],
            "problem_count": len(problems),
        }
        self._audit("config_rejected", details)
        try:
            self.register.set_meta(rejected_meta_key(self.node), json.dumps({**details, "refused_utc": iso(utc_now())}))
        except VigieError as store_exc:
            log.warning("node %s: refusal not recorded for vigie status: %s", self.node, store_exc)

    def _take_turn(self) -> str | None:
        """Take the site's reload turn if it is free or lapsed (in one write transaction: the writers of every
        node are serialised). Returns None when taken, else the node holding it (or why it cannot be read)."""
        key = RELOAD_TURN_PREFIX + self.running.config.site
        try:
            with self.register.database.transaction() as conn:
                now = database_now(conn)
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                expiry, _, holder = (row[0] if row else "").partition("|")
                if expiry and expiry > iso(now) and holder != self.node:
                    return holder
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, f"{iso(now + timedelta(seconds=RELOAD_TURN_S))}|{self.node}"),
                )
        except VigieError as exc:  # the register out of reach: no reload now, the next poll tries again
            return f"(unknown: {exc})"
        return None

    def _hand_back_turn(self) -> bool:
        """The node runs again: the reload turn it took before its exec goes to the next node.

        Returns:
            Whether the turn was looked at (False: the register was out of reach; the next poll tries again).
        """
        key = RELOAD_TURN_PREFIX + self.running.config.site
        try:
            with self.register.database.transaction() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0].partition("|")[2] == self.node:
                    conn.execute("UPDATE meta SET value = '' WHERE key = ?", (key,))
        except VigieError as exc:
            log.warning("node %s: reload turn not handed back yet: %s", self.node, exc)
            return False
        return True

    def _audit(self, event: str, details: dict) -> None:
        try:
            self.register.audit(event, self.actor, None, details)
        except VigieError as exc:  # a register out of reach must not stop a node over its config file
            log.error("node %s: cannot audit %s: %s", self.node, event, exc)


def reexecute() -> NoReturn:
    """Replace this process by a fresh run of its own command line: same PID, interpreter, options and
    environment (`sys.orig_argv` keeps `-m module` and the script path as they were given), so that a
    systemd unit keeps tracking it. Call it once the runner has stopped and the register is closed.

    Returns:
        Never: the process is replaced (its file descriptors are close-on-exec, Python's default).

    Raises:
        OSError: the interpreter could not be executed (the process then exits with the error).
    """
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)
