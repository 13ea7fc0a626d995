"""Signed checkpoints of the audit chain (Ed25519): what a forger who can rewrite the register cannot redo.

The hash chain and its anchor file protect against a careless edit, not against someone who can write the
register's folder: they can recompute every hash and the anchor file. A checkpoint is a signed statement
"audit row N had hash H (and the log C rows) at time T", made with a private key the runner never holds
(the DPO's), appended to a file kept outside the register's folder (a second file system in practice) and
logged as one syslog-friendly line. `vigie audit verify --checkpoints FILE --public-key KEY` then checks each
signature and that the chain still holds each signed (row, hash); a rewrite of anything up to the last
checkpoint is found, and the first row after the last good checkpoint is named.

What a checkpoint cannot protect (see docs/threat_model.md): rows after the last checkpoint, a thief of the
private key, and a checkpoint file deleted along with the register when both are on the same disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runner.core.alerts import canonical_json
from runner.core.errors import StoreError, UsageError
from runner.register import clock
from runner.register.database import read_meta

PRIVATE_KEY_NAME, PUBLIC_KEY_NAME = "vigie-audit-signing.key", "vigie-audit-signing.pub"
CHECKPOINT_SUFFIX = ".checkpoints"
_DOMAIN = b"vigie-audit-checkpoint-v1\n"  # a signature made for a checkpoint means nothing elsewhere
_FIELDS = ("v", "register", "row_id", "row_hash", "rows", "purge_upto", "ts_utc", "key_id")


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint: the newest audit row (id, hash), the row count, when, and by which key."""

    register: str
    row_id: int
    row_hash: str
    rows: int
    purge_upto: int
    ts_utc: str
    key_id: str
    signature: str = ""

    def payload(self) -> dict:
        """The signed fields.

        Returns:
            The checkpoint without its signature, as canonical JSON will sign it.
        """
        return {
            "v": 1,
            "register": self.register,
            "row_id": self.row_id,
            "row_hash": self.row_hash,
            "rows": self.rows,
            "purge_upto": self.purge_upto,
            "ts_utc": self.ts_utc,
            "key_id": self.key_id,
        }

    def line(self) -> str:
        """The checkpoint file's line.

        Returns:
            One line of canonical JSON, signature included (no newline).
        """
        return canonical_json({**self.payload(), "sig": self.signature})

    def log_line(self) -> str:
        """The syslog / journald line (key=value, one line).

        Returns:
            e.g. `vigie-audit-checkpoint register=vigie.db row=42 hash=... rows=42 ts=... key=... sig=...`.
        """
        return (
            f"vigie-audit-checkpoint register={self.register} row={self.row_id} hash={self.row_hash} "
            f"rows={self.rows} purge_upto={self.purge_upto} ts={self.ts_utc} key={self.key_id} sig={self.signature}"
        )


def _message(payload: dict) -> bytes:
    return _DOMAIN + canonical_json(payload).encode("utf-8")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name of a public key, to tell which key signed a checkpoint.

    Args:
        public_key: an Ed25519 public key.

    Returns:
        The first 16 hex digits of the SHA-256 of its raw bytes.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- keys -----------------------------------------------------------------------------------------------------
def generate_keys(folder: Path) -> tuple[Path, Path]:
    """Write a new signing key pair: the private key readable by its owner only (0600), never overwritten.

    Args:
        folder: where to write them (the DPO's, not the register's folder).

    Returns:
        (private key file, public key file).

    Raises:
        UsageError: a key file is already there, or the folder cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / PRIVATE_KEY_NAME, folder / PUBLIC_KEY_NAME
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise UsageError(f"{path} already exists: not overwritten (a lost key cannot sign again)") from None
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The DPO's signing key; refused when others can read it.

    Args:
        path: a PEM (PKCS8) Ed25519 private key file.

    Returns:
        The key.

    Raises:
        UsageError: missing, readable by others, or not an Ed25519 private key.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"signing key {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise UsageError(f"signing key {path} can be read by others (mode {mode:o}): chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"signing key {path}: not a PEM private key without password ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"signing key {path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public key that checks checkpoints.

    Args:
        path: a PEM Ed25519 public key file.

    Returns:
        The key.

    Raises:
        UsageError: missing, or not an Ed25519 public key.
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"public key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"public key {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"public key {path}: not an Ed25519 key")
    return key


# -- making a checkpoint ------------------------------------------------------------------------------------
def sign_checkpoint(conn: sqlite3.Connection, register_name: str, key: Ed25519PrivateKey) -> Checkpoint:
    """Sign the newest audit row of the register, read in one snapshot.

    Args:
        conn: the register's connection (not in a transaction; the caller holds its lock).
        register_name: the register's file name, recorded in the checkpoint.
        key: the signing key.

    Returns:
        The signed checkpoint.
    """
    conn.execute("BEGIN")
    try:
        newest = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        rows = conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
        purge_upto = int(read_meta(conn, "audit_purge_upto") or 0)
        anchor = read_meta(conn, "audit_anchor_hash")
    finally:
        conn.execute("COMMIT")
    row_id, row_hash = (newest[0], newest[1]) if newest else (purge_upto, anchor)
    unsigned = Checkpoint(
        register_name, row_id, row_hash, rows, purge_upto, clock.iso(clock.utc_now()), key_id(key.public_key())
    )
    signature = base64.b64encode(key.sign(_message(unsigned.payload()))).decode("ascii")
    return replace(unsigned, signature=signature)


def checkpoint_file(out: Path, db_path: Path) -> Path:
    """Where `--out` sends the checkpoints: the file itself, or `<db name>.checkpoints` in a folder; refused
    inside the register's folder (whoever can rewrite the register could rewrite it too).

    Args:
        out: a file or an existing folder.
        db_path: the register's file.

    Returns:
        The checkpoint file's path.

    Raises:
        UsageError: the file would be in the register's folder.
    """
    target = out / (db_path.name + CHECKPOINT_SUFFIX) if out.is_dir() else out
    register_folder = db_path.resolve().parent
    if target.resolve().parent == register_folder or target.resolve().is_relative_to(register_folder):
        raise UsageError(
            f"checkpoint file {target} is in the register's folder: keep it where the runner cannot write "
            "(another file system, the DPO's)"
        )
    return target


def same_file_system(path: Path, db_path: Path) -> bool:
    """Whether the checkpoint file is on the register's file system (a warning: one disk loses both).

    Args:
        path: the checkpoint file (or where it will be).
        db_path: the register's file.

    Returns:
        True when both are on the same device.
    """
    try:
        return (path if path.exists() else path.parent).stat().st_dev == db_path.stat().st_dev
    except OSError:
        return False


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append the checkpoint's line to the file, and sync it.

    Args:
        path: the checkpoint file (created with 0644 when missing).
        checkpoint: a signed checkpoint.

    Raises:
        StoreError: the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (checkpoint.line() + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"checkpoint file {path}: {exc.strerror or exc}") from None


# -- checking checkpoints -------------------------------------------------------------------------------------
def read_checkpoints(path: Path) -> list[tuple[int, dict]]:
    """The checkpoint file's entries: (line number, fields), a torn last line (crash while appending) skipped.

    Args:
        path: the checkpoint file.

    Returns:
        Every entry, in file order.

    Raises:
        UsageError: the file cannot be read, or a line other than the last is not a checkpoint.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UsageError(f"checkpoint file {path}: {exc.strerror or exc}") from None
    entries = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
            if not isinstance(fields, dict) or set(fields) != {*_FIELDS, "sig"}:
                raise ValueError("not a checkpoint")
            entries.append((number, fields))
        except ValueError:
            if number == len(lines):
                continue  # torn by a crash while it was appended
            raise UsageError(f"checkpoint file {path}: line {number} is not a checkpoint") from None
    return entries


def checkpoint_check(entries: list[tuple[int, dict]], public_key: Ed25519PublicKey, file_name: str):
    """A check of the register against its checkpoints, to run inside verify's snapshot.

    Args:
        entries: what `read_checkpoints` read.
        public_key: the key that signed them.
        file_name: the checkpoint file's name, for the messages.

    Returns:
        A function (connection) -> ((first bad row, problem) or None, checkpoints found intact).
    """

    def check(conn: sqlite3.Connection) -> tuple[tuple[int, str] | None, int]:
        return _check(conn, entries, public_key, file_name)

    return check


def _check(
    conn: sqlite3.Connection, entries: list[tuple[int, dict]], public_key: Ed25519PublicKey, file_name: str
) -> tuple[tuple[int, str] | None, int]:
    purge_upto = int(read_meta(conn, "audit_purge_upto") or 0)
    anchor = read_meta(conn, "audit_anchor_hash")
    for number, fields in entries:  # a forged line is a problem of its own, wherever it is
        if not _signed(fields, public_key):
            return (purge_upto + 1, f"{file_name} line {number}: signature does not verify (forged, or another key)"), 0
    good = 0
    last_good_row = purge_upto
    for number, fields in sorted(entries, key=lambda e: int(e[1]["row_id"])):
        row_id, row_hash = int(fields["row_id"]), str(fields["row_hash"])
        if row_id < purge_upto:
            continue  # purged by retention since: nothing left to compare
        stored: str | None
        if row_id == purge_upto:
            stored = anchor
        else:
            row = conn.execute("SELECT hash FROM audit WHERE id = ?", (row_id,)).fetchone()
            stored = row[0] if row else None
        if stored != row_hash:
            state = "is missing" if stored is None else "has another hash"
            first_untrusted = last_good_row + 1
            last_good = f"the last good checkpoint is row {last_good_row}" if good else "no checkpoint before it holds"
            return (
                first_untrusted,
                f"audit log rewritten: {file_name} line {number} (signed {fields['ts_utc']}) witnessed row {row_id} "
                f"with hash {row_hash[:16]}..., the register's row {row_id} {state}; rows from {first_untrusted} on "
                f"cannot be trusted ({last_good})",
            ), good
        good += 1
        last_good_row = row_id
    return None, good


def _signed(fields: dict, public_key: Ed25519PublicKey) -> bool:
    payload = {k: fields[k] for k in _FIELDS}
    try:
        public_key.verify(base64.b64decode(str(fields["sig"]), validate=True), _message(payload))
    except (InvalidSignature, ValueError):
        return False
    return True
