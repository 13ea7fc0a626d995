"""Storage faults: a full disk, a read-only register, a missing media folder, a damaged database
file, and an audit log whose newest rows were cut off. Each gives a one-line error and a health
entry, never costs an alert that was stored, and never overwrites the evidence.

Full and read-only file systems are real ones where the machine allows it (a small tmpfs, a
read-only bind mount: root in a container, as in CI); those tests skip elsewhere. The others fake
nothing but the size limit (SQLite's max_page_count) or break files the way a disk would.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from runner.cli import main as vigie
from runner.config.loading import load_config
from runner.core.errors import StoreError
from runner.register import Register, anchor_path_for
from runner.service.lifecycle import Runner, RunOptions
from tests.faults.crash_child import CROSSING_RULE, crossing_script
from tests.helpers import FakePool, ScriptedDetector, alert_record, config_dict, make_video, tiny_jpeg, write_config


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def health_of(register: Register) -> dict[str, str]:
    return {h["camera_id"]: h["status"] for h in register.health()}


def _mount(args: list[str]) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs (root only): a file system that really fills up."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or not _mount(["-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)]):
        pytest.skip("needs root and mount to make a small file system")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fills the file system of `folder` to its last block with one file, returned."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def make_read_only(tmp_path):
    """Makes a folder read-only: a read-only bind mount as root (root ignores permissions), chmod otherwise."""
    done: list[tuple[Path, str]] = []

    def apply(folder: Path) -> None:
        if os.geteuid() == 0:
            if not (_mount(["--bind", str(folder), str(folder)]) and _mount(["-o", "remount,ro,bind", str(folder)])):
                pytest.skip("needs mount to make a read-only file system as root")
            done.append((folder, "mount"))
        else:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(0o555 if path.is_dir() else 0o444)
            done.append((folder, "chmod"))

    yield apply
    for folder, how in reversed(done):
        if how == "mount":
            subprocess.run(["umount", "-l", str(folder)], check=False)
        else:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)


def populated(db: Path, alerts: int = 3) -> list[int]:
    with Register(db) as register:
        return [register.add_alert(alert_record(), tiny_jpeg(i)).id for i in range(alerts)]


# -- disk full -----------------------------------------------------------------------------------------
def test_register_full_gives_one_line_and_a_health_entry_and_loses_nothing(tmp_path):
    with Register(tmp_path / "vigie.db") as register:
        stored = [register.add_alert(alert_record(), tiny_jpeg(i)) for i in range(3)]
        pages = register._conn.execute("PRAGMA page_count").fetchone()[0]
        register._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from now on
        big = alert_record(details={"note": "x" * 20000})
        with pytest.raises(StoreError) as raised:
            register.add_alert(big, tiny_jpeg(9))
        assert one_line(str(raised.value)).endswith("cannot write (database or disk is full)")
        assert health_of(register) == {"register": "error"}
        assert not (register.media_dir / f"cam-01/{big.ts_utc[:10]}/{big.uid}.jpg").exists()  # room given back
        assert [a["id"] for a in register.alerts()] == [s.id for s in stored]
        assert register.verify().ok

        register._conn.execute(f"PRAGMA max_page_count = {pages * 100}")  # room again
        again = register.add_alert(big, tiny_jpeg(9))
        assert again.snapshot is not None and health_of(register) == {"register": "ok"}
        assert register.verify().ok


def test_full_media_disk_stores_the_alert_without_its_image(tmp_path, small_disk):
    with Register(tmp_path / "vigie.db", small_disk / "media") as register:
        filler = fill(small_disk)
        stored = register.add_alert(alert_record(), tiny_jpeg(5) * 20)
        assert stored.snapshot is None and stored.snapshot_note == "snapshot not saved: No space left on device"
        assert register.alert(stored.id)["snapshot_note"] == stored.snapshot_note
        assert health_of(register) == {"storage": "error"}
        assert not list((small_disk / "media").rglob("*.tmp"))  # the partial file was removed
        assert register.verify().ok

        filler.unlink()
        saved = register.add_alert(alert_record(), tiny_jpeg(6))
        assert saved.snapshot is not None and health_of(register) == {"storage": "ok"}
        assert register.verify().ok


def test_full_register_disk_is_one_line_and_replay_refuses_with_exit_5(tmp_path, small_disk, capsys):
    db = small_disk / "vigie.db"
    kept = populated(db, alerts=2)
    filler = fill(small_disk)
    make_video(tmp_path / "clip.avi", 5, size=(64, 48))
    site = write_config(tmp_path / "site.yaml", config_dict([CROSSING_RULE]))
    code = vigie(["replay", str(site), "--camera", "cam-01", "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 5, err
    assert one_line(err).startswith(f"vigie: register {db}: ") and "full" in err
    filler.unlink()
    with Register(db, create=False) as register:
        assert [a["id"] for a in register.alerts()] == kept
        assert register.verify().ok


def test_full_file_system_under_the_register_still_shows_in_health(small_disk):
    db = small_disk / "vigie.db"
    with Register(db) as register:
        kept = [register.add_alert(alert_record(), None).id for _ in range(2)]
        filler = fill(small_disk)
        with pytest.raises(StoreError) as raised:
            for _ in range(50):  # the WAL may still have a few free frames
                register.add_alert(alert_record(details={"pad": "x" * 4000}), None)
        assert one_line(str(raised.value)).endswith("cannot write (database or disk is full)")
        assert health_of(register)["register"] == "error"  # from memory if the register could not take it
        filler.unlink()
        register.add_alert(alert_record(), None)
        assert health_of(register)["register"] == "ok"
    with Register(db, read_only=True) as register:
        assert health_of(register)["register"] == "ok" and register.verify().ok
        assert [a["id"] for a in register.alerts()][:2] == kept


def test_runner_on_a_full_register_keeps_going_and_stores_again_when_room_returns(tmp_path, caplog):
    make_video(tmp_path / "clip.avi", 20, fps=10, size=(160, 120))
    loaded = load_config(write_config(tmp_path / "site.yaml", config_dict([CROSSING_RULE], loop=True)))
    register = Register(tmp_path / "vigie.db")
    runner = Runner(
        loaded,
        register,
        RunOptions(mode="live", realtime=False, retention=False),
        pool=FakePool(ScriptedDetector(crossing_script)),
    )
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(summary=runner.run()), daemon=True)
    thread.start()

    def wait(predicate, what, timeout_s=30.0):
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            assert thread.is_alive(), "the runner stopped"
            time.sleep(0.02)

    try:
        wait(lambda: len(register.alerts()) >= 3, "first alerts")
        with register._lock:
            pages = register._conn.execute("PRAGMA page_count").fetchone()[0]
            register._conn.execute(f"PRAGMA max_page_count = {pages}")
            before_full = [a["uid"] for a in register.alerts()]
        wait(lambda: health_of(register).get("register") == "error", "the register health entry")
        time.sleep(0.5)
        assert thread.is_alive(), "a full register stopped the runner"
        stored_while_full = len(register.alerts())
        with register._lock:
            register._conn.execute(f"PRAGMA max_page_count = {pages * 1000}")
        room_back = time.monotonic()
        wait(lambda: len(register.alerts()) > stored_while_full, "alerts stored again")
        print(f"register full: first alert stored {1000 * (time.monotonic() - room_back):.0f} ms after room returned")
        wait(lambda: len(register.alerts()) > len(before_full) + 3, "more alerts stored")
        wait(lambda: health_of(register).get("register") == "ok", "the register health entry back to ok")
    finally:
        runner.stop()
        thread.join(15)
    assert not thread.is_alive()
    uids = [a["uid"] for a in register.alerts()]
    assert uids[: len(before_full)] == before_full  # nothing stored before the fault was lost
    assert register.verify().ok
    full_errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "full" in r.getMessage()]
    assert full_errors and all("\n" not in r.getMessage() for r in full_errors)
    register.close()


# -- read-only register --------------------------------------------------------------------------------
def test_read_only_register_reads_and_refuses_writes_with_exit_5(tmp_path, make_read_only, capsys):
    folder = tmp_path / "var"
    db = folder / "vigie.db"
    ids = populated(db)
    make_video(tmp_path / "clip.avi", 5, size=(64, 48))
    site = write_config(tmp_path / "site.yaml", config_dict([CROSSING_RULE]))
    make_read_only(folder)

    assert vigie(["alerts", "--db", str(db), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(ids)
    assert vigie(["audit", "verify", "--db", str(db)]) == 0
    assert capsys.readouterr().out.startswith("audit chain intact: ")
    assert vigie(["status", "--db", str(db)]) == 0
    capsys.readouterr()

    for command in (["run", str(site)], ["replay", str(site), "--camera", "cam-01"]):
        assert vigie([*command, "--db", str(db)]) == 5
        err = one_line(capsys.readouterr().err)
        assert err.startswith(f"vigie: register {db} is read-only (") and "cannot record alerts" in err
    with pytest.raises(StoreError, match="read-only"):
        Register(db)
    with Register(db, read_only=True) as register:
        assert [a["id"] for a in register.alerts()] == ids and register.verify().ok


# -- media folder --------------------------------------------------------------------------------------
def test_media_folder_deleted_while_running_is_recreated(tmp_path):
    with Register(tmp_path / "vigie.db") as register:
        register.add_alert(alert_record(), tiny_jpeg(1))
        shutil.rmtree(register.media_dir)
        stored = register.add_alert(alert_record(), tiny_jpeg(2))
        assert stored.snapshot is not None and (register.media_dir / stored.snapshot).is_file()
        report = register.verify()  # the first image went with the folder: verify says so
        assert not report.ok and "snapshot" in report.problem and "missing" in report.problem


def test_media_folder_that_cannot_be_created_keeps_alerts_and_reports_it(tmp_path):
    blocker = tmp_path / "media"
    blocker.write_text("a file where the media folder should be")
    with Register(tmp_path / "vigie.db", blocker / "snapshots") as register:
        stored = [register.add_alert(alert_record(), tiny_jpeg(i)) for i in range(3)]
        assert all(s.snapshot is None and s.snapshot_note == "snapshot not saved: Not a directory" for s in stored)
        assert health_of(register) == {"storage": "error"}
        assert "Not a directory" in {h["camera_id"]: h["detail"] for h in register.health()}["storage"]
        assert len(register.alerts()) == 3 and register.verify().ok
        blocker.unlink()  # the operator fixes it: the next image is saved, the health entry clears
        fixed = register.add_alert(alert_record(), tiny_jpeg(4))
        assert fixed.snapshot is not None and health_of(register) == {"storage": "ok"}


def test_storage_health_survives_a_restart_until_it_is_fixed(tmp_path):
    blocker = tmp_path / "media"
    blocker.write_text("not a folder")
    with Register(tmp_path / "vigie.db", blocker) as register:
        register.add_alert(alert_record(), tiny_jpeg())
    with Register(tmp_path / "vigie.db", blocker) as register:
        assert health_of(register) == {"storage": "error"}
        blocker.unlink()
        register.add_alert(alert_record(), tiny_jpeg())
        assert health_of(register) == {"storage": "ok"}


# -- damaged database file -----------------------------------------------------------------------------
def _truncate_half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _truncate_header(db: Path) -> None:
    os.truncate(db, 50)


def _random_bytes(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def _text_file(db: Path) -> None:
    db.write_text("site: a YAML file saved under the register's name by mistake\n")


def _garbled_header(db: Path) -> None:
    with open(db, "r+b") as handle:
        handle.write(os.urandom(100))


DAMAGE = [_truncate_half, _truncate_header, _random_bytes, _text_file, _garbled_header]


def _checkpointed_register(db: Path, alerts: int = 60) -> None:
    with Register(db) as register:
        for _ in range(alerts):
            register.add_alert(alert_record(details={"pad": "x" * 300}), None)
        register._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_damaged_register_is_a_one_line_error_and_is_never_rewritten(tmp_path, damage, capsys):
    db = tmp_path / "vigie.db"
    _checkpointed_register(db)
    damage(db)
    evidence = file_sha(db)
    with pytest.raises(StoreError) as raised:
        Register(db)
    message = one_line(str(raised.value))
    assert message.startswith(f"register {db}: ") and "left untouched" in message
    for command in (["alerts"], ["audit", "verify"], ["status"]):
        assert vigie([*command, "--db", str(db)]) == 5
        assert one_line(capsys.readouterr().err).startswith(f"vigie: register {db}: ")
    assert file_sha(db) == evidence


def test_damage_deep_in_the_file_is_found_by_verify(tmp_path, capsys):
    db = tmp_path / "vigie.db"
    _checkpointed_register(db, alerts=200)
    size = db.stat().st_size
    with open(db, "r+b") as handle:  # garble pages of alert rows, which opening does not read
        handle.seek(size - 8 * 4096)
        handle.write(os.urandom(4 * 4096))
    evidence = file_sha(db)
    try:
        with Register(db, read_only=True) as register:
            report = register.verify()
        assert not report.ok and one_line(report.problem).startswith("database file damaged: ")
        assert vigie(["audit", "verify", "--db", str(db)]) == 1
        assert one_line(capsys.readouterr().out).startswith("audit chain BROKEN: database file damaged: ")
    except StoreError as exc:  # also acceptable: refused at open
        assert "left untouched" in one_line(str(exc))
    assert file_sha(db) == evidence


def test_foreign_sqlite_file_is_not_turned_into_a_register(tmp_path):
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    evidence = file_sha(db)
    with pytest.raises(StoreError, match="not a Vigie register; left untouched"):
        Register(db)
    assert file_sha(db) == evidence


def test_emptied_register_is_refused_while_its_anchor_remembers_rows(tmp_path):
    db = tmp_path / "vigie.db"
    populated(db)
    os.truncate(db, 0)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="is empty but vigie.db.anchor records audit rows up to 3"):
        Register(db)
    assert db.stat().st_size == 0
    db.unlink()
    with pytest.raises(StoreError, match="is missing but vigie.db.anchor"):
        Register(db)
    anchor_path_for(db).rename(tmp_path / "old.anchor")  # both moved aside: a new register may start
    with Register(db) as register:
        assert register.verify().ok


# -- audit tail truncation -----------------------------------------------------------------------------
def _drop_guards(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_delete")
    return conn


def test_cutting_the_newest_audit_rows_is_reported(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as register:
        register.add_alert(alert_record(), tiny_jpeg())
        register.audit("config_loaded", "runner", None, {"revision": 1})
        register.audit("runner_stopped", "runner", None, {"reason": "stopped"})
        assert register.verify().ok
        conn = _drop_guards(db)
        conn.execute("DELETE FROM audit WHERE id >= 2")  # a chain 1..1 is still a valid chain
        conn.close()
        report = register.verify()
    assert not report.ok and report.first_bad_row == 2
    assert report.problem == (
        "audit rows 2 to 3 are missing: vigie.db.anchor witnessed row 3 "
        "(newest rows removed, or an older copy of the register)"
    )
    assert vigie(["audit", "verify", "--db", str(db)]) == 1


def test_an_older_copy_of_the_register_is_reported(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as register:
        register.add_alert(alert_record(), tiny_jpeg())
        register._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        backup = tmp_path / "backup.db"
        shutil.copy(db, backup)
        register.add_alert(alert_record(), None)
    shutil.copy(backup, db)  # restored over the newer one
    with Register(db, read_only=True) as register:
        report = register.verify()
    assert not report.ok and report.first_bad_row == 2 and "missing" in report.problem


def test_a_rewritten_tail_is_reported(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as register:
        register.audit("pause", "alice", None, {"scope": "*"})
        register.audit("resume", "alice", None, {"scope": "*"})
        conn = _drop_guards(db)
        conn.execute("DELETE FROM audit WHERE id = 2")
        conn.close()
        register.audit("forged", "mallory", None, {})  # a new row 2, properly chained
        anchor = anchor_path_for(db)
        anchor.write_text(anchor.read_text().splitlines()[0] + "\n" + anchor.read_text().splitlines()[1] + "\n")
        report = register.verify()
    assert not report.ok and report.first_bad_row == 2
    assert "differs from the one vigie.db.anchor witnessed" in report.problem


def test_anchor_lagging_or_torn_by_a_crash_still_verifies(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as register:
        for i in range(4):
            register.audit("test", "runner", None, {"i": i})
    anchor = anchor_path_for(db)
    lines = anchor.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4"]
    anchor.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])  # row 4's line lost, row 3's torn
    with Register(db) as register:
        assert register.verify().ok
        register.audit("test", "runner", None, {"i": 4})
        assert register.verify().ok


def test_a_deleted_anchor_file_is_reported(tmp_path):
    db = tmp_path / "vigie.db"
    populated(db, alerts=1)
    anchor_path_for(db).unlink()
    with Register(db, read_only=True) as register:
        report = register.verify()
    assert not report.ok and report.first_bad_row == 1 and "anchor file vigie.db.anchor is missing" in report.problem
