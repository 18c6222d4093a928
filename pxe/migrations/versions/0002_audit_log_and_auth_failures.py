"""The audit log and the failed-authentication counter (commit 2111604); schema_version 2.

Releases from 2111604 until migrations created these two tables with `create_all` and still recorded
schema_version 1: such a database is stamped 0001 like an older one, and this step keeps the tables
it finds (they were made from the same definitions) instead of creating them again.
schema_version becomes 2 so that a metalstream from before migrations refuses the database.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Offline (`alembic ... --sql`) there is no database to look at: the script creates both tables.
    existing = set() if context.is_offline_mode() else set(sa.inspect(op.get_bind()).get_table_names())
    if "audit_log" not in existing:
        op.create_table(
            "audit_log",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("time", sa.Float, nullable=False),
            sa.Column("token_id", sa.String(16), nullable=True),
            sa.Column("client", sa.String(64), nullable=True),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("target", sa.String(200), nullable=True),
            sa.Column("status", sa.Integer, nullable=False),
        )
        op.create_index("ix_audit_log_time", "audit_log", ["time"])
    if "auth_failures" not in existing:
        op.create_table(
            "auth_failures",
            sa.Column("client", sa.String(64), primary_key=True),
            sa.Column("window_start", sa.Float, nullable=False),
            sa.Column("failures", sa.Integer, nullable=False),
            sa.Column("blocked_until", sa.Float, nullable=True),
        )
    _set_schema_version(2)


def downgrade() -> None:
    op.drop_table("auth_failures")
    op.drop_index("ix_audit_log_time", table_name="audit_log")
    op.drop_table("audit_log")
    _set_schema_version(1)


def _set_schema_version(version: int) -> None:
    table = sa.table("schema_version", sa.column("version", sa.Integer))
    op.execute(table.delete())
    op.execute(table.insert().values(version=version))
