"""The versioned site configuration: the single source of truth shared by workbench and runner.

- `runner.config.base`: frozen base model and geometric field types (imported by rule modules).
- `runner.config.site`: the site / camera / model / retention models.
- `runner.config.loading`: load, validate (field-path errors), hash and dump YAML files.
"""
