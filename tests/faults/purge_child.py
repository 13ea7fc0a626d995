"""A purge to be killed: `python -m tests.faults.purge_child` is a small fork server.

It imports the register once, then for every `purge DB` line on stdin forks a child that applies a site's
retention to that register exactly as `vigie purge --config` does (record the site's retention, then
`run_purge` for that site). It prints `pid N` for each child and `exit N STATUS` when that child is gone.
Forking from one warm process puts the kill inside the purge, not inside the imports.
"""

from __future__ import annotations

import os
import sys

SITE, MEDIA_DAYS, ALERT_DAYS = "test-site", 7, 30


def purge(db: str) -> None:
    from runner.config.site import Retention
    from runner.core.access import Principal
    from runner.register import Register
    from runner.register.retention import SitePolicy, record_site_retention, run_purge

    by = Principal("svc", "runner")
    with Register(db, create=False) as register:
        policy = SitePolicy(SITE, "operational", Retention(media_days=MEDIA_DAYS, alert_days=ALERT_DAYS))
        retention, _ = record_site_retention(register, policy, by)
        run_purge(register, retention, by, site=SITE)


def serve() -> None:
    import runner.register.retention  # noqa: F401 - warm imports, shared by every child

    for line in sys.stdin:
        command, _, db = line.strip().partition(" ")
        if command != "purge":
            break
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                purge(db)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)


if __name__ == "__main__":
    serve()
