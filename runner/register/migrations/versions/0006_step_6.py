"""Register schema step 6: the outbox of alerts and decisions pushed out (DDL in runner.register.schema)."""

from runner.register.migrations import refuse_downgrade, upgrade_step

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply step 6."""
    upgrade_step(6)


def downgrade() -> None:
    """Refused: a register is never downgraded."""
    refuse_downgrade()
