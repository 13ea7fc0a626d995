"""Vigie workbench: Voilà apps for the design phase, the operators and the analysts.

It imports `runner` (config models, pipeline, register); `runner` never imports it.
"""
