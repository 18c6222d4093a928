"""The schema before migrations (metalstream up to commit 34d2900): images, deployments, events,
api_tokens and schema_version, exactly as `metadata.create_all` made them then.

Databases made by that code are stamped with this revision, not migrated through it (pxe.db.upgrade).

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema_version = op.create_table(
        "schema_version",
        sa.Column("version", sa.Integer, primary_key=True),
    )
    op.create_table(
        "images",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("filename", sa.String(160), nullable=False),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("open_mac", sa.String(17), unique=True, nullable=True),
        sa.Column("idempotency_key", sa.String(200), unique=True, nullable=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("image_name", sa.String(128), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("storage", sa.JSON, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("bytes_done", sa.BigInteger, nullable=True),
        sa.Column("bytes_total", sa.BigInteger, nullable=True),
        sa.Column("stream_started_at", sa.Float, nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("agent_address", sa.String(64), nullable=True),
        sa.Column("root_uuid", sa.String(64), nullable=True),
        sa.Column("log", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_seen_at", sa.Float, nullable=True),
        sa.Column("installed_at", sa.Float, nullable=True),
        sa.Column("check_after", sa.Float, nullable=True),
        sa.Column("check_message", sa.Text, nullable=True),
    )
    op.create_index("ix_deployments_mac", "deployments", ["mac"])
    op.create_index("ix_deployments_image_name", "deployments", ["image_name"])
    op.create_index("ix_deployments_state", "deployments", ["state"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", sa.String(36), sa.ForeignKey("deployments.id"), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("bytes_done", sa.BigInteger, nullable=True),
        sa.Column("bytes_total", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_events_deployment_id", "events", ["deployment_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("comment", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.bulk_insert(schema_version, [{"version": 1}])


def downgrade() -> None:
    for table in ("api_tokens", "events", "deployments", "images", "schema_version"):
        op.drop_table(table)
