"""bench/native_blocks: the shim records live large blocks by call stack; dumps are read and compared."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.native_blocks import BlockStack, build, growth_lines, read_dump
from bench.soak import build_parser, main, native_growth_lines

ROOT = Path(__file__).resolve().parents[2]

DUMP = """stack 7 live 3 bytes 3145728 allocated 40
  _multiarray_umath.cpython-311-x86_64-linux-gnu.so+0x173ff8 ?
  cv2.abi3.so+0x5ff732 ?
stack 9 live 1 bytes 1693440 allocated 1
  libopenvino.so+0x87c210 _ZN2ov13CompiledModel20create_infer_requestEv
"""


def test_a_dump_is_read_by_call_stack():
    stacks = read_dump(DUMP)
    assert stacks["7"] == BlockStack(
        3, 3145728, 40, ("_multiarray_umath.cpython-311-x86_64-linux-gnu.so+0x173ff8 ?", "cv2.abi3.so+0x5ff732 ?")
    )
    assert stacks["9"].frames[0].endswith("create_infer_requestEv")


def test_growth_names_the_stacks_that_kept_more():
    first = read_dump(DUMP)
    last = read_dump(DUMP.replace("live 1 bytes 1693440 allocated 1", "live 5 bytes 8467200 allocated 5"))
    lines = growth_lines(first, last)
    assert lines[1].startswith("  +6.5 MB (+4 blocks; 5 live, 5 allocated in all)")
    assert "create_infer_request" in lines[2]
    assert not any("cv2" in line for line in lines)  # stack 7 did not grow
    assert growth_lines(last, first)[-1] == "  none"


def test_the_soak_compares_the_first_window_with_the_last_dump(tmp_path):
    paths = []
    for i, live in enumerate((1, 2, 9)):
        path = tmp_path / f"d{i}.txt"
        path.write_text(DUMP.replace("live 1 bytes 1693440", f"live {live} bytes {live * 1693440}"))
        paths.append(path)
    lines = native_growth_lines([(0.0, paths[0]), (60.0, paths[1]), (600.0, paths[2])], window_s=100.0)
    assert "(+7 blocks" in lines[1]  # from the dump at 60 s, the first window's last
    assert native_growth_lines([(0.0, paths[0])], 100.0) == []


def test_native_blocks_needs_the_shim_preloaded(capsys):
    assert build_parser().parse_args(["--native-blocks"]).native_blocks
    assert main(["--native-blocks", "--duration-s", "1"]) == 2
    assert "make soak-native" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_shim_records_numpy_blocks_until_freed(tmp_path):
    shim = build(tmp_path / "native_blocks.so")
    script = f"""
import ctypes, numpy as np
dump = ctypes.CDLL(None).native_blocks_dump
kept = [np.ones(1 << 18) for _ in range(4)]  # 2 MB each
dropped = [np.ones(1 << 18) for _ in range(3)]
del dropped
small = [np.ones(16) for _ in range(100)]
dump(b"{tmp_path / "dump.txt"}")
"""
    env = dict(os.environ, LD_PRELOAD=str(shim))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=ROOT)
    stacks = read_dump((tmp_path / "dump.txt").read_text())
    numpy_stacks = [s for s in stacks.values() if any("multiarray" in f for f in s.frames)]
    assert sum(s.live_blocks for s in numpy_stacks) == 4
    assert sum(s.live_bytes for s in numpy_stacks) == 4 * (1 << 21)  # the three freed ones are not live


def test_a_missing_compiler_is_one_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="no C compiler 'no-such-cc'"):
        build(tmp_path / "x.so", compiler="no-such-cc")
