"""Register schema step 3: rights requests and restrictions (DDL in runner.register.schema)."""

from runner.register.migrations import refuse_downgrade, upgrade_step

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply step 3."""
    upgrade_step(3)


def downgrade() -> None:
    """Refused: a register is never downgraded."""
    refuse_downgrade()
