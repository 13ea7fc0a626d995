"""Confidence intervals of the dashboards: one home, runner.core.stats (make eval uses the same)."""

from __future__ import annotations

from runner.core.stats import DEFAULT_CONFIDENCE, Estimate, mean_t_interval, wilson_interval

__all__ = ["DEFAULT_CONFIDENCE", "Estimate", "mean_t_interval", "wilson_interval"]
