"""Deployments may carry the LUKS passphrase of an encrypted layout (issue 13): `encryption_passphrase_sealed`,
ciphertext only (pxe.secretbox, as the BMC password), handed to the deployment's agent in its plan and never
answered.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("encryption_passphrase_sealed", sa.Text, nullable=True))
    _set_schema_version(7)


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("encryption_passphrase_sealed")
    _set_schema_version(6)


def _set_schema_version(version: int) -> None:
    table = sa.table("schema_version", sa.column("version", sa.Integer))
    op.execute(table.delete())
    op.execute(table.insert().values(version=version))
