"""Benchmarks of the runner: throughput against the naive Ultralytics loop, capacity, latency, soak.

Not part of the installed distribution and not run as tests (their own logic is tested in tests/bench).
"""
