"""Register schema step 4: named logins and failed logins (DDL in runner.register.schema)."""

from runner.register.migrations import refuse_downgrade, upgrade_step

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply step 4."""
    upgrade_step(4)


def downgrade() -> None:
    """Refused: a register is never downgraded."""
    refuse_downgrade()
