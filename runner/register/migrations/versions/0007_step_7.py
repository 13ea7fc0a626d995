"""Register schema step 7: runner nodes, camera leases, the alerts' fencing columns (DDL in runner.register.schema)."""

from runner.register.migrations import refuse_downgrade, upgrade_step

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply step 7."""
    upgrade_step(7)


def downgrade() -> None:
    """Refused: a register is never downgraded."""
    refuse_downgrade()
