"""Register schema step 2: site retention, media doomed by a purge (DDL in runner.register.schema)."""

from runner.register.migrations import refuse_downgrade, upgrade_step

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply step 2."""
    upgrade_step(2)


def downgrade() -> None:
    """Refused: a register is never downgraded."""
    refuse_downgrade()
