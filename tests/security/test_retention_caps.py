"""Retention cannot be raised past the legal caps (30 days of images, 365 days of records): not in
the config, not through the workbench's forms or its export, not by calling the register directly."""

from __future__ import annotations

import pytest

from runner.config.site import MAX_ALERT_DAYS, MAX_MEDIA_DAYS, Retention, SiteConfig
from runner.core.access import Principal
from runner.core.errors import UsageError
from runner.register import Register
from runner.register.retention import effective_retention
from tests.helpers import alert_record, config_dict, write_config
from workbench.export import ConfigExporter, ExportError, SiteFolder
from workbench.setup_app import CameraSetup

DESIGNER = Principal("Agent Martin", "design")
OVER_CAPS = [("media_days", MAX_MEDIA_DAYS + 1), ("alert_days", MAX_ALERT_DAYS + 1), ("media_days", 10**9)]


@pytest.fixture
def site(tmp_path):
    zones = tmp_path / "zones"
    (zones / "test-site").mkdir(parents=True)
    write_config(zones / "test-site" / "site.yaml", config_dict())
    register = Register(tmp_path / "vigie.db")
    yield ConfigExporter(zones, register), SiteFolder(zones, "test-site"), register
    register.close()


def _unchanged(folder: SiteFolder, register: Register) -> None:
    assert folder.current().config.revision == 1 and not folder.revisions_dir.exists()
    assert register.audit_rows(event="config_exported") == []


@pytest.mark.parametrize(("field", "days"), OVER_CAPS)
def test_the_setup_forms_cannot_export_a_longer_retention(site, field, days):
    exporter, folder, register = site
    setup = CameraSetup(folder.current().config.model_dump(mode="json"), base_dir=folder.dir)
    setup.retention_form.set(field, days)
    assert (
        f"retention.{field}",
        f"must be <= {MAX_MEDIA_DAYS if field == 'media_days' else MAX_ALERT_DAYS}",
    ) in setup.problems()
    with pytest.raises((ExportError, ValueError)):
        setup.export(exporter, DESIGNER)
    _unchanged(folder, register)


@pytest.mark.parametrize(("field", "days"), OVER_CAPS)
def test_a_draft_built_without_validation_is_still_refused_at_export(site, field, days):
    exporter, folder, register = site
    valid = SiteConfig.model_validate(config_dict())
    forged_retention = Retention.model_construct(**{**valid.retention.model_dump(), field: days})
    forged = valid.model_copy(update={"retention": forged_retention})  # model_copy does not validate either
    assert getattr(forged.retention, field) == days
    with pytest.raises(ExportError) as refused:
        exporter.export(forged, DESIGNER)
    assert any(f"retention.{field}" in problem for _, problem in refused.value.problems) or any(
        path == f"retention.{field}" for path, _ in refused.value.problems
    ), refused.value.problems
    _unchanged(folder, register)


@pytest.mark.parametrize(
    ("media_days", "alert_days"), [(31, 365), (30, 366), (0, 365), (30, 0), (30.5, 365), ("30", 365)]
)
def test_the_register_refuses_to_purge_with_a_retention_past_the_caps(tmp_path, media_days, alert_days):
    with Register(tmp_path / "vigie.db") as register:
        register.add_alert(alert_record(), None)
        with pytest.raises(UsageError, match="legal cap"):
            register.purge(media_days=media_days, alert_days=alert_days)
        assert register.audit_rows(event="purge") == []


def test_a_recorded_retention_past_the_caps_falls_back_to_the_caps(tmp_path):
    with Register(tmp_path / "vigie.db") as register:
        register.set_meta("retention_media_days", "90")
        register.set_meta("retention_alert_days", "900")
        retention = effective_retention(register, None)
    assert (retention.media_days, retention.alert_days) == (MAX_MEDIA_DAYS, MAX_ALERT_DAYS)
