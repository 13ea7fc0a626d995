"""`vigie status` (and --json) shows what each destination is still owed, since when, and its last error, with
the endpoint's credentials redacted."""

from __future__ import annotations

import json

from runner.cli import main
from runner.register import Register
from runner.register.outbox import Outbox
from tests.helpers import alert_record


def test_status_shows_the_outbox_backlog(tmp_path, capsys):
    db = tmp_path / "vigie.db"
    with Register(db) as register:
        outbox = Outbox(register.database)
        outbox.open_destination("webhook:vms", include_tests=False)
        outbox.open_destination("mqtt", include_tests=False)
        register.add_alert(alert_record(is_test=False))
        register.add_alert(alert_record(is_test=False))
        outbox.advance("mqtt", outbox.cursor("mqtt") + 2)
        outbox.failed("webhook:vms", "webhook:vms: https://csu:***@vms.example/hook answered HTTP 503")

    assert main(["status", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("outbox (alerts and decisions pushed out):")
    mqtt, vms = lines[start + 1], lines[start + 2]
    assert mqtt.split()[:3] == ["mqtt", "0", "owed,"]
    assert vms.split()[:3] == ["webhook:vms", "2", "owed"] and "1 failed attempt(s)" in vms and "HTTP 503" in vms

    assert main(["status", "--db", str(db), "--json"]) == 0
    backlog = {row["destination"]: row for row in json.loads(capsys.readouterr().out)["outbox"]}
    assert backlog["mqtt"]["pending"] == 0 and backlog["webhook:vms"]["pending"] == 2
    assert backlog["webhook:vms"]["attempts"] == 1 and backlog["webhook:vms"]["oldest_utc"]
