"""Register schema step 5: alert claims and clips (DDL in runner.register.schema)."""

from runner.register.migrations import refuse_downgrade, upgrade_step

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply step 5."""
    upgrade_step(5)


def downgrade() -> None:
    """Refused: a register is never downgraded."""
    refuse_downgrade()
