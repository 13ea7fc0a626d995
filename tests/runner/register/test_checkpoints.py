"""Signed checkpoints: the file format, its damage, the keys (the forgeries are in tests/security)."""

from __future__ import annotations

import json

import pytest

from runner.core.errors import StoreError, UsageError
from runner.register import GENESIS_HASH
from runner.register.checkpoints import (
    append_checkpoint,
    generate_keys,
    load_private_key,
    load_public_key,
    read_checkpoints,
)

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL


@pytest.fixture
def keys(tmp_path):
    return generate_keys(tmp_path / "dpo")


def test_an_empty_register_is_checkpointed_at_its_anchor(register, keys, tmp_path):
    checkpoint = register.checkpoint(keys[0])
    assert (checkpoint.row_id, checkpoint.row_hash, checkpoint.rows) == (0, GENESIS_HASH, 0)
    path = tmp_path / "out" / "cp"
    append_checkpoint(path, checkpoint)
    assert register.verify(path, keys[1]).ok


def test_a_torn_last_line_is_skipped_and_a_damaged_one_refused(register, keys, tmp_path):
    register.audit("pause", "bob")
    path = tmp_path / "cp"
    append_checkpoint(path, register.checkpoint(keys[0]))
    with path.open("a") as handle:
        handle.write('{"v": 1, "register": "vig')  # a crash while the line was appended
    assert len(read_checkpoints(path)) == 1
    assert register.verify(path, keys[1]).checkpoints_checked == 1
    path.write_text("garbage\n" + path.read_text())
    with pytest.raises(UsageError, match="line 1 is not a checkpoint"):
        read_checkpoints(path)


def test_another_key_does_not_verify(register, keys, tmp_path):
    register.audit("pause", "bob")
    path = tmp_path / "cp"
    append_checkpoint(path, register.checkpoint(keys[0]))
    other = generate_keys(tmp_path / "other")
    report = register.verify(path, other[1])
    assert not report.ok and "signature does not verify" in (report.problem or "")


def test_keys_are_checked(keys, tmp_path):
    assert load_private_key(keys[0]) and load_public_key(keys[1])
    not_a_key = tmp_path / "x.pub"
    not_a_key.write_text("not a key\n")
    with pytest.raises(UsageError, match="not a PEM"):
        load_public_key(not_a_key)
    with pytest.raises(UsageError, match="No such file"):
        load_private_key(tmp_path / "absent.key")
    with pytest.raises(UsageError, match="already exists"):
        generate_keys(keys[0].parent)


def test_the_checkpoint_line_carries_what_it_signs(register, keys, tmp_path):
    register.audit("pause", "bob")
    checkpoint = register.checkpoint(keys[0])
    fields = json.loads(checkpoint.line())
    newest = register.audit_rows()[-1]
    assert (fields["row_id"], fields["row_hash"], fields["rows"]) == (newest["id"], newest["hash"], 1)
    assert fields["register"] == register.target.name and fields["sig"] and "\n" not in checkpoint.log_line()


def test_verify_needs_the_public_key(register, keys, tmp_path):
    path = tmp_path / "cp"
    append_checkpoint(path, register.checkpoint(keys[0]))
    with pytest.raises(StoreError, match="public key"):
        register.verify(path, None)
