"""The versioned site configuration: the single source of truth shared by workbench and runner.

- `runner.config.base`: frozen base model and geometric field types (imported by rule configs).
- `runner.config.site`: the site / camera / model / retention models.
- `runner.config.rules`: every rule's config model, one module per kind (`RULE_CONFIGS`); no rule behaviour.
- `runner.config.loading`: load, validate (field-path errors), hash and dump YAML files.
"""
