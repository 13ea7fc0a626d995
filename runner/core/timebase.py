"""Stream time: every rule and gate reads frame timestamps, never the wall clock."""

TIME_EPSILON_S = 1e-6
"""Durations compared against thresholds get this slack: frame times are i / fps in floating point, and
1.8 + 1.0 = 2.8 must count as a dwell of 1.0 s, not 0.9999999999999998 s (one frame late); timestamps
closer than this are the same instant."""
