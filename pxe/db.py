"""Storage schema (SQLAlchemy 2.0) and engine setup.

SQLite under the data directory by default, any SQLAlchemy URL by option. The schema is created
on start; `schema_version` records the version so a later release can migrate step by step.
Uniqueness that matters under concurrency is enforced by the database, not by locks:
`deployments.idempotency_key` is unique, and `deployments.open_mac` (the MAC while the deployment
is open, NULL once it ended) is unique, so two open deployments for one MAC cannot exist.
"""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from metalstream.errors import OperationFailed

SCHEMA_VERSION = 1

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, primary_key=True))

images = Table(
    "images", metadata,
    Column("name", String(128), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("filename", String(160), nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

deployments = Table(
    "deployments", metadata,
    Column("id", String(36), primary_key=True),
    Column("mac", String(17), nullable=False, index=True),
    Column("open_mac", String(17), unique=True, nullable=True),
    Column("idempotency_key", String(200), unique=True, nullable=True),
    Column("request_sha256", String(64), nullable=False),
    Column("image_name", String(128), nullable=False, index=True),
    Column("request", JSON, nullable=False),
    Column("storage", JSON, nullable=True),
    Column("state", String(16), nullable=False, index=True),
    Column("phase", String(16), nullable=True),
    Column("message", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("bytes_done", BigInteger, nullable=True),
    Column("bytes_total", BigInteger, nullable=True),
    Column("stream_started_at", Float, nullable=True),
    Column("token_hash", String(64), nullable=True),
    Column("agent_address", String(64), nullable=True),
    Column("root_uuid", String(64), nullable=True),
    Column("log", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=True),
    Column("installed_at", Float, nullable=True),
    Column("check_after", Float, nullable=True),
    Column("check_message", Text, nullable=True),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(36), ForeignKey("deployments.id"), nullable=False, index=True),
    Column("time", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("phase", String(16), nullable=True),
    Column("message", Text, nullable=True),
    Column("bytes_done", BigInteger, nullable=True),
    Column("bytes_total", BigInteger, nullable=True),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(16), primary_key=True),
    Column("scope", String(8), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("comment", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)


audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("token_id", String(16), nullable=True),  # NULL: no valid token was presented
    Column("client", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=True),
    Column("status", Integer, nullable=False),
)

auth_failures = Table(
    "auth_failures", metadata,
    Column("client", String(64), primary_key=True),
    Column("window_start", Float, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("blocked_until", Float, nullable=True),
)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer (several gunicorn workers)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create the engine for `url` and make sure the schema exists at the current version."""
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30} if is_sqlite else {}, pool_pre_ping=not is_sqlite)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    metadata.create_all(engine)  # CREATE TABLE IF NOT EXISTS: safe when several workers start at once
    with engine.connect() as conn:
        found = conn.execute(select(schema_version.c.version)).scalars().all()
    current = max(found) if found else None
    if current is None:
        try:
            with engine.begin() as conn:
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        except IntegrityError:  # another worker recorded it at the same moment
            pass
    elif current > SCHEMA_VERSION:
        raise OperationFailed(f"database schema version {current} is newer than this metalstream "
                              f"({SCHEMA_VERSION}); upgrade metalstream")
    # Future versions: `if current < 2: ...ALTER...; update version` goes here, one step per version.
