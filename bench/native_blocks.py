"""The Python side of bench/native_blocks.c: which call stacks keep more and more large native blocks.

    make soak-native SOAK_ARGS="--site --duration-s 900"

builds the shim into var/, preloads it into `bench/soak.py --native-blocks`, which dumps the live blocks
of 128 kB and more at each sample and prints, at the end, the call stacks whose live bytes grew the most
between the end of the first window and the last sample (frames as library+offset, `addr2line -e` or
`gdb` name them). tracemalloc sees Python objects and numpy arrays; this sees the rest too.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "bench" / "native_blocks.c"
DUMP_SYMBOL = "native_blocks_dump"
FRAMES_SHOWN = 8
_HEADER = re.compile(r"stack (\d+) live (-?\d+) bytes (-?\d+) allocated (\d+)")


@dataclass(frozen=True)
class BlockStack:
    """One allocating call stack in a dump."""

    live_blocks: int
    live_bytes: int
    allocated: int
    frames: tuple[str, ...]


def build(target: Path, compiler: str = "cc") -> Path:
    """Compile the shim into `target` (a shared object to preload).

    Raises:
        RuntimeError: the compiler is missing or failed (its first line of error).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [compiler, "-O2", "-shared", "-fPIC", "-o", str(target), str(SOURCE), "-ldl"]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise RuntimeError(f"native blocks: no C compiler '{compiler}'") from exc
    if done.returncode != 0:
        raise RuntimeError(f"native blocks: {compiler} failed: {(done.stderr.strip().splitlines() or ['?'])[0]}")
    return target


def preloaded_dump():
    """The shim's dump function when it is preloaded into this process, else None."""
    function = getattr(ctypes.CDLL(None), DUMP_SYMBOL, None)
    if function is not None:
        function.argtypes = [ctypes.c_char_p]
        function.restype = ctypes.c_int
    return function


def read_dump(text: str) -> dict[str, BlockStack]:
    """Call stacks by id, from a dump's text (a header line per stack, then its frames, indented)."""
    found: dict[str, BlockStack] = {}
    key, counts, frames = None, (0, 0, 0), []
    for line in [*text.splitlines(), "stack end"]:
        if not line.startswith("stack "):
            frames.append(line.strip())
            continue
        if key is not None:
            found[key] = BlockStack(*counts, tuple(f for f in frames if f))
        match = _HEADER.match(line)
        key = match.group(1) if match else None
        counts = tuple(int(v) for v in match.groups()[1:]) if match else (0, 0, 0)
        frames = []
    return found


def growth_lines(first: dict[str, BlockStack], last: dict[str, BlockStack], top: int = 6) -> list[str]:
    """The call stacks whose live bytes grew the most from `first` to `last`, with their first frames."""
    grown = []
    for key, stack in last.items():
        before = first.get(key)
        delta_bytes = stack.live_bytes - (before.live_bytes if before else 0)
        delta_blocks = stack.live_blocks - (before.live_blocks if before else 0)
        if delta_bytes > 0:
            grown.append((delta_bytes, delta_blocks, stack))
    grown.sort(key=lambda row: -row[0])
    total_mb = sum(s.live_bytes for s in last.values()) / 2**20
    lines = [f"native blocks >= 128 kB live at the end: {total_mb:.0f} MB; grown the most since the first window:"]
    for delta_bytes, delta_blocks, stack in grown[:top]:
        lines.append(
            f"  {delta_bytes / 2**20:+.1f} MB ({delta_blocks:+d} blocks; {stack.live_blocks} live, "
            f"{stack.allocated} allocated in all)"
        )
        lines.extend(f"      {frame}" for frame in stack.frames[:FRAMES_SHOWN])
    if not grown:
        lines.append("  none")
    return lines
