"""Machines and power (issue 14): `machines` (name, BMC with the password sealed, tags, hardware facts,
power state, current and last deployment), `machine_macs` (one row per MAC: a MAC belongs to at most one
machine), and on `deployments` the machine it installs and the power steps the service took for it.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEPLOYMENT_COLUMNS = (
    ("machine_id", sa.String(36)),
    ("power_claimed_at", sa.Float),
    ("powered_at", sa.Float),
    ("boot_restored_at", sa.Float),
)


def upgrade() -> None:
    for name, kind in DEPLOYMENT_COLUMNS:
        op.add_column("deployments", sa.Column(name, kind, nullable=True))
    op.create_index("ix_deployments_machine_id", "deployments", ["machine_id"])
    op.create_table(
        "machines",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("bmc_driver", sa.String(16), nullable=False),
        sa.Column("bmc_address", sa.String(255), nullable=True),
        sa.Column("bmc_username", sa.String(64), nullable=True),
        sa.Column("bmc_password_sealed", sa.Text, nullable=True),
        sa.Column("bmc_verify_tls", sa.Boolean, nullable=True),
        sa.Column("bmc_system_id", sa.String(255), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("facts", sa.JSON, nullable=True),
        sa.Column("facts_at", sa.Float, nullable=True),
        sa.Column("power_state", sa.String(16), nullable=True),
        sa.Column("power_checked_at", sa.Float, nullable=True),
        sa.Column("power_claimed_at", sa.Float, nullable=True),
        sa.Column("power_error", sa.Text, nullable=True),
        sa.Column("current_deployment_id", sa.String(36), nullable=True),
        sa.Column("last_deployment_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "machine_macs",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("machine_id", sa.String(36), sa.ForeignKey("machines.id", ondelete="CASCADE"), nullable=False,
                  index=True),
    )
    _set_schema_version(5)


def downgrade() -> None:
    op.drop_table("machine_macs")
    op.drop_table("machines")
    op.drop_index("ix_deployments_machine_id", "deployments")
    with op.batch_alter_table("deployments") as batch:
        for name, _ in reversed(DEPLOYMENT_COLUMNS):
            batch.drop_column(name)
    _set_schema_version(4)


def _set_schema_version(version: int) -> None:
    table = sa.table("schema_version", sa.column("version", sa.Integer))
    op.execute(table.delete())
    op.execute(table.insert().values(version=version))
