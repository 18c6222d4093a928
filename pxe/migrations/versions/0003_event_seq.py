"""Agent events carry the agent's sequence number; (deployment, seq) is unique, so an event the agent
posts again (its first answer was lost: a replica died, a proxy timed out) is stored once.
Events without seq (older agents, the service's own) stay NULL, which the unique index allows many of.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("seq", sa.Integer, nullable=True))
    op.create_index("uq_events_deployment_seq", "events", ["deployment_id", "seq"], unique=True)
    _set_schema_version(3)


def downgrade() -> None:
    op.drop_index("uq_events_deployment_seq", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("seq")
    _set_schema_version(2)


def _set_schema_version(version: int) -> None:
    table = sa.table("schema_version", sa.column("version", sa.Integer))
    op.execute(table.delete())
    op.execute(table.insert().values(version=version))
