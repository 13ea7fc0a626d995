"""Event rules: one module per kind behind `runner.rules.base.Rule`, listed in `registry.RULES`."""
