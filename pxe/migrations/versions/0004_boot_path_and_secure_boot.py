"""Deployments record how their machine booted (issue 18): the network boot path it took (`boot_path`:
"ipxe", "grub-http" or "shim-grub"), the last first-stage loader a TFTP client fetched for it (`first_stage`:
loader name, client address, time; attributed through the neighbour table), and whether Secure Boot was on
in the installer (reported by the agent) and on the installed system (read by the activation check).

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    ("boot_path", sa.String(16)),
    ("first_stage", sa.JSON),
    ("installer_secure_boot", sa.Boolean),
    ("target_secure_boot", sa.Boolean),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("deployments", sa.Column(name, kind, nullable=True))
    _set_schema_version(4)


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
    _set_schema_version(3)


def _set_schema_version(version: int) -> None:
    table = sa.table("schema_version", sa.column("version", sa.Integer))
    op.execute(table.delete())
    op.execute(table.insert().values(version=version))
