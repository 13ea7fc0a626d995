"""The forger of issue 20: someone who can write the register's folder turns a confirmed "transmitted to police"
decision into a rejection, recomputing every hash and the anchor file (or deleting the newest rows and the
anchor's last lines, then deciding again). The keyless chain cannot see it; a signed checkpoint made before,
kept outside the register's folder, does, and names the first row after the last good checkpoint."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import runner.register.clock as register_clock
from runner.cli import main
from runner.core.access import Principal
from runner.core.alerts import canonical_json
from runner.register import Register, audit_hash, iso
from runner.register.audit import row_digest
from runner.register.checkpoints import append_checkpoint, generate_keys
from runner.register.schema import DECISION_DIGEST_FIELDS
from tests.helpers import alert_record, tiny_jpeg

OPERATOR = Principal("alice", "operator")


@pytest.fixture
def site(tmp_path):
    """A register with a police transmission, checkpointed by the DPO, then a few more rows."""
    keys = generate_keys(tmp_path / "dpo")
    db = tmp_path / "var" / "vigie.db"
    checkpoints = tmp_path / "other-disk" / "vigie.db.checkpoints"
    with Register(db) as register:
        first = register.add_alert(alert_record(), tiny_jpeg())
        police = register.add_alert(alert_record(), tiny_jpeg())
        register.decide(police.id, "confirmed", by=OPERATOR, follow_up="transmitted_to_police")
        append_checkpoint(checkpoints, register.checkpoint(keys[0]))
        register.decide(first.id, "rejected", by=OPERATOR, reason="shadow")
        register.audit("pause", "bob")
    return db, checkpoints, keys[1], police.id


def decision_row(conn: sqlite3.Connection, alert_id: int) -> int:
    rows = conn.execute("SELECT id, details FROM audit WHERE event = 'decision'").fetchall()
    return next(r[0] for r in rows if json.loads(r[1])["alert_id"] == alert_id)


def rechain(conn: sqlite3.Connection, db: Path, from_row: int) -> None:
    """Recompute every hash from a row on, and write the anchor file again: what issue 20 did."""
    prev = conn.execute("SELECT hash FROM audit WHERE id = ?", (from_row - 1,)).fetchone()[0]
    for rid, ts, event, actor, camera, details in conn.execute(
        "SELECT id, ts_utc, event, actor, camera_id, details FROM audit WHERE id >= ? ORDER BY id", (from_row,)
    ).fetchall():
        new_hash = audit_hash(prev, rid, ts, event, actor, camera, details)
        conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, new_hash, rid))
        prev = new_hash
    lines = [f"{rid} {h}\n" for rid, h in conn.execute("SELECT id, hash FROM audit ORDER BY id")]
    db.with_name(db.name + ".anchor").write_text("".join(lines))


def forge_by_rewriting(db: Path, alert_id: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute(
        "UPDATE decisions SET decision = 'rejected', reason = 'shadow', follow_up = 'none' WHERE alert_id = ?",
        (alert_id,),
    )
    decision = conn.execute("SELECT * FROM decisions WHERE alert_id = ?", (alert_id,)).fetchone()
    digest = row_digest(decision, DECISION_DIGEST_FIELDS)
    conn.execute("UPDATE decisions SET digest = ? WHERE alert_id = ?", (digest, alert_id))
    conn.execute("UPDATE alerts SET status = 'rejected' WHERE id = ?", (alert_id,))
    row = decision_row(conn, alert_id)
    details = json.loads(conn.execute("SELECT details FROM audit WHERE id = ?", (row,)).fetchone()[0])
    details.update(decision="rejected", reason="shadow", follow_up="none", digest=digest)
    conn.execute("UPDATE audit SET details = ? WHERE id = ?", (canonical_json(details), row))
    rechain(conn, db, row)
    conn.close()


def forge_by_deleting_the_newest_rows(db: Path, alert_id: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    row = decision_row(conn, alert_id)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit WHERE id >= ?", (row,))
    conn.execute("DELETE FROM decisions")  # this one and the later ones, all after the cut
    conn.execute("UPDATE alerts SET status = 'pending'")
    anchor = db.with_name(db.name + ".anchor")
    anchor.write_text("".join(line + "\n" for line in anchor.read_text().splitlines() if int(line.split()[0]) < row))
    conn.close()
    with Register(db) as register:  # then decides again, through Vigie
        register.decide(alert_id, "rejected", by=Principal("mallory", "operator"), reason="shadow")


@pytest.mark.parametrize("forge", [forge_by_rewriting, forge_by_deleting_the_newest_rows])
def test_a_forged_rejection_is_found_from_a_checkpoint(site, forge, capsys):
    db, checkpoints, public_key, police_id = site
    with Register(db, read_only=True) as register:
        assert register.verify(checkpoints, public_key).checkpoints_checked == 1
    forge(db, police_id)
    with Register(db, read_only=True) as register:
        assert register.alert(police_id)["decision"] == "rejected"
        assert register.verify().ok  # the keyless chain cannot tell (issue 20, item 5)
        report = register.verify(checkpoints, public_key)
    assert not report.ok and report.first_bad_row == 1  # no checkpoint before the one that fails holds
    assert "audit log rewritten" in (report.problem or "")

    code = main(
        ["audit", "verify", "--db", str(db), "--checkpoints", str(checkpoints), "--public-key", str(public_key)]
    )
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("audit chain BROKEN at row 1: audit log rewritten: vigie.db.checkpoints line 1")
    assert out.count("\n") == 1


def test_the_first_row_after_the_last_good_checkpoint_is_named(site, tmp_path):
    db, checkpoints, public_key, police_id = site
    with Register(db) as register:
        register.audit("pause", "bob")
        append_checkpoint(checkpoints, register.checkpoint(tmp_path / "dpo" / "vigie-audit-signing.key"))
        newest = register.audit_rows()[-1]["id"]
        register.audit("resume", "bob")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET actor = 'carol' WHERE id = ?", (newest - 1,))  # between the two checkpoints
    rechain(conn, db, newest - 1)
    conn.close()
    with Register(db, read_only=True) as register:
        assert register.verify().ok
        report = register.verify(checkpoints, public_key)
    first_checkpoint_row = json.loads(checkpoints.read_text().splitlines()[0])["row_id"]
    assert not report.ok and report.first_bad_row == first_checkpoint_row + 1
    assert f"the last good checkpoint is row {first_checkpoint_row}" in (report.problem or "")


def test_a_forged_checkpoint_line_is_refused(site):
    db, checkpoints, public_key, _ = site
    line = json.loads(checkpoints.read_text())
    line["row_id"] += 1  # the forger moves the checkpoint instead of the chain
    checkpoints.write_text(json.dumps(line) + "\n")
    with Register(db, read_only=True) as register:
        report = register.verify(checkpoints, public_key)
    assert not report.ok and "signature does not verify" in (report.problem or "")


def test_rows_after_the_last_checkpoint_are_not_protected(site):
    """What a checkpoint cannot do (docs/threat_model.md): the rows written after it can still be cut off."""
    db, checkpoints, public_key, _ = site
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_delete")
    newest = conn.execute("SELECT MAX(id) FROM audit").fetchone()[0]
    conn.execute("DELETE FROM audit WHERE id = ?", (newest,))
    conn.close()
    anchor = db.with_name(db.name + ".anchor")
    anchor.write_text("".join(f"{line}\n" for line in anchor.read_text().splitlines() if int(line.split()[0]) < newest))
    with Register(db, read_only=True) as register:
        assert register.verify(checkpoints, public_key).ok


def test_keygen_checkpoint_and_verify_from_the_command_line(tmp_path, capsys):
    db = tmp_path / "var" / "vigie.db"
    with Register(db) as register:
        register.add_alert(alert_record(), tiny_jpeg())
    dpo, other_disk = tmp_path / "dpo", tmp_path / "mnt" / "audit"
    other_disk.mkdir(parents=True)
    assert main(["audit", "keygen", str(dpo)]) == 0
    private_key, public_key = dpo / "vigie-audit-signing.key", dpo / "vigie-audit-signing.pub"
    assert private_key.stat().st_mode & 0o777 == 0o600
    assert main(["audit", "keygen", str(dpo)]) == 2  # a key is never overwritten
    capsys.readouterr()

    checkpoint = ["audit", "checkpoint", "--db", str(db), "--key", str(private_key)]
    assert main([*checkpoint, "--out", str(other_disk)]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("vigie-audit-checkpoint register=vigie.db row=1 hash=")
    assert out.startswith(
        f"checkpoint: audit row 1 (1 row(s)) signed, appended to {other_disk / 'vigie.db.checkpoints'}"
    )
    checkpoints = other_disk / "vigie.db.checkpoints"
    assert json.loads(checkpoints.read_text())["row_id"] == 1

    verify = ["audit", "verify", "--db", str(db), "--checkpoints", str(checkpoints)]
    assert main([*verify, "--public-key", str(public_key)]) == 0
    assert capsys.readouterr().out == "audit chain intact: 1 row(s), 1 alert(s) checked; 1 signed checkpoint(s) hold\n"
    assert main(verify) == 2  # the public key is needed
    assert "--public-key" in capsys.readouterr().err

    assert main([*checkpoint, "--out", str(db.parent / "cp.txt")]) == 2  # never beside the register
    assert "in the register's folder" in capsys.readouterr().err
    private_key.chmod(0o644)
    assert main([*checkpoint, "--out", str(other_disk)]) == 2
    assert "can be read by others" in capsys.readouterr().err
    assert len(checkpoints.read_text().splitlines()) == 1


def test_checkpoints_survive_the_retention_purge(tmp_path, monkeypatch):
    keys = generate_keys(tmp_path / "dpo")
    db, checkpoints = tmp_path / "vigie.db", tmp_path / "elsewhere" / "cp"
    t0 = datetime.now(UTC) - timedelta(days=20)
    moment = {"now": t0}
    monkeypatch.setattr(register_clock, "utc_now", lambda: moment["now"])
    with Register(db) as register:
        register.add_alert(alert_record(ts_utc=iso(t0)), tiny_jpeg())
        append_checkpoint(checkpoints, register.checkpoint(keys[0]))  # row 1: purged below
        register.audit("pause", "bob")
        append_checkpoint(checkpoints, register.checkpoint(keys[0]))  # row 2: the anchor after the purge
        moment["now"] = t0 + timedelta(days=15)
        register.add_alert(alert_record(ts_utc=iso(moment["now"])), tiny_jpeg())
        append_checkpoint(checkpoints, register.checkpoint(keys[0]))  # row 3: kept
        moment["now"] = t0 + timedelta(days=20)
        assert register.purge(media_days=10, alert_days=10)["audit_rows"] == 2
        assert register.verify(checkpoints, keys[1]).ok
        assert register.verify(checkpoints, keys[1]).checkpoints_checked == 2
