"""The soak's own logic: RSS reading and the growth figure (the soak itself is not a test)."""

from __future__ import annotations

import pytest

from bench.soak import build_parser, growth_pct, main, malloc_figures, rss_mb


def test_growth_compares_the_peaks_of_the_first_and_last_windows():
    samples = [(0.0, 100.0), (60.0, 110.0), (120.0, 108.0), (1800.0, 109.0), (3000.0, 112.0), (3600.0, 111.1)]
    base, final, growth = growth_pct(samples, 600.0)
    assert (base, final) == (110.0, 112.0)
    assert growth == pytest.approx(1.818, abs=1e-3)


def test_a_leak_shows_as_growth():
    samples = [(t * 60.0, 500.0 + t * 2.0) for t in range(61)]  # +2 MB a minute
    assert growth_pct(samples, 600.0)[2] == pytest.approx((620.0 - 520.0) / 520.0 * 100.0)


def test_growth_needs_samples():
    with pytest.raises(ValueError, match="no RSS sample"):
        growth_pct([], 600.0)


def test_rss_is_read_from_proc():
    assert 10.0 < rss_mb() < 100_000.0


def test_defaults_and_bad_values(capsys):
    args = build_parser().parse_args([])
    assert (args.duration_s, args.every_s, args.baseline_s, args.model) == (3600.0, 60.0, 600.0, "coco")
    assert main(["--duration-s", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


@pytest.mark.skipif(malloc_figures() is None, reason="the C library is not glibc 2.33+")
def test_malloc_figures_see_a_block_mapped_on_its_own():
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = malloc_figures()
    block = libc.malloc(64 << 20)  # above glibc's highest mmap threshold (32 MB): always mapped on its own
    try:
        during = malloc_figures()
    finally:
        libc.free(block)
    assert during.mapped_blocks == before.mapped_blocks + 1
    assert during.mapped_mb - before.mapped_mb == pytest.approx(64.0, abs=0.1)
    assert during.arenas_mb >= during.in_use_mb > 0 and during.free_in_arenas_mb >= 0
    assert "malloc arenas" in during.describe()
