"""Vigie runner: the headless service that turns camera streams into auditable alerts.

It never imports `workbench`, ipywidgets or Voilà: the dependency goes the other way.
"""

from runner.core import env as _env  # noqa: F401  (sets Ultralytics' offline defaults before anyone imports it)

__version__ = "0.1.0"
