"""Register schema step 1: meta, alerts, decisions, the audit log, control, health (DDL in runner.register.schema)."""

from runner.register.migrations import refuse_downgrade, upgrade_step

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply step 1."""
    upgrade_step(1)


def downgrade() -> None:
    """Refused: a register is never downgraded."""
    refuse_downgrade()
