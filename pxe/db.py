"""Storage schema (SQLAlchemy 2.0 Core), engine setup and schema upgrades (Alembic).

SQLite under the data directory by default; PostgreSQL (`postgresql+psycopg://...`) is the other
supported backend, and any SQLAlchemy URL is accepted. Uniqueness that matters under concurrency is
enforced by the database, not by locks: `deployments.idempotency_key` is unique, and
`deployments.open_mac` (the MAC while the deployment is open, NULL once it ended) is unique, so two
open deployments for one MAC cannot exist.

The tables below are the schema at the newest migration (`pxe/migrations/versions`); a test keeps
the two equal. `make_engine` brings the database to that revision on start (`upgrade`):

* an empty database gets every migration;
* a database written before migrations existed (tables made by `create_all`, a `schema_version`
  row saying 1, no `alembic_version`) is stamped with revision 0001 and upgraded from there;
* a database at a revision this code does not know (a newer metalstream wrote it) is refused.

Revision 0002 sets `schema_version` to 2, so a metalstream from before migrations refuses an
upgraded database instead of using it.

Concurrent starts (several gunicorn workers, several replicas on one PostgreSQL) are safe: the
check-and-upgrade runs in one transaction holding a PostgreSQL advisory lock (PostgreSQL's DDL is
transactional: the loser waits, then finds the head revision and does nothing), and for SQLite under
an exclusive `flock` on the database's directory.
"""
from __future__ import annotations

import fcntl
import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from metalstream.errors import OperationFailed

MIGRATIONS = Path(__file__).with_name("migrations")
# Databases from before migrations have no alembic_version, only `schema_version`: the revision each
# such version is. (Revision 0002 sets schema_version 2, which those releases refuse.)
LEGACY_REVISIONS = {1: "0001"}
ADVISORY_LOCK_KEY = 0x6D657461_6C737472  # "metalstr": one lock id for every metalstream on a database

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
    # how the machine reached the installer: "ipxe" | "grub-http" | "shim-grub" (pxe.boot.BOOT_PATHS)
    Column("boot_path", String(16), nullable=True),
    Column("first_stage", JSON, nullable=True),  # {"loader", "client", "mac", "at"}: last first-stage TFTP fetch
    Column("installer_secure_boot", Boolean, nullable=True),
    Column("target_secure_boot", Boolean, nullable=True),
    # machines and power (issue 14): the machine this deployment installs (NULL: a MAC-only deployment)
    Column("machine_id", String(36), nullable=True, index=True),
    # set by the worker that claimed this deployment's power-on (boot-once network + power cycle)
    Column("power_claimed_at", Float, nullable=True),
    Column("powered_at", Float, nullable=True),  # when the BMC accepted the power-on
    Column("boot_restored_at", Float, nullable=True),  # when the boot device was set back to disk after installed
    # the LUKS passphrase of an encrypted layout (issue 13): ciphertext only (pxe.secretbox); only the agent's plan
    # carries it, never an answer
    Column("encryption_passphrase_sealed", Text, nullable=True),
)

machines = Table(
    "machines", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("state", String(16), nullable=False, index=True),  # pxe.machine_states
    Column("bmc_driver", String(16), nullable=False),  # "redfish" | "ipmi" | "manual"
    Column("bmc_address", String(255), nullable=True),
    Column("bmc_username", String(64), nullable=True),
    Column("bmc_password_sealed", Text, nullable=True),  # ciphertext only (pxe.secretbox); never returned
    Column("bmc_verify_tls", Boolean, nullable=True),
    Column("bmc_system_id", String(255), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("facts", JSON, nullable=True),
    Column("facts_at", Float, nullable=True),
    Column("power_state", String(16), nullable=True),  # "on" | "off" | "unknown"; NULL: never asked
    Column("power_checked_at", Float, nullable=True),
    Column("power_claimed_at", Float, nullable=True),  # a worker is refreshing the power state
    Column("power_error", Text, nullable=True),  # the BMC's last error message (no secrets)
    Column("current_deployment_id", String(36), nullable=True),
    Column("last_deployment_id", String(36), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per MAC: a MAC belongs to at most one machine (the primary key says so under concurrency).
machine_macs = Table(
    "machine_macs", metadata,
    Column("mac", String(17), primary_key=True),
    Column("machine_id", String(36), ForeignKey("machines.id", ondelete="CASCADE"), nullable=False, index=True),
)

webhooks = Table(
    "webhooks", metadata,
    Column("id", String(36), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("event_types", JSON, nullable=False),  # list of event type names, or ["*"]
    Column("secret_sealed", Text, nullable=False),  # ciphertext only (pxe.secretbox); never returned
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
)

# The outbox: every state change of a deployment or a machine, written in the transaction that made it.
webhook_events = Table(
    "webhook_events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),  # the event id receivers dedupe on
    Column("type", String(64), nullable=False),
    Column("time", Float, nullable=False),
    Column("payload", JSON, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(36), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("event_id", String(36), nullable=False),
    Column("state", String(16), nullable=False, index=True),  # "pending" | "delivered" | "failed"
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=True, index=True),
    Column("claimed_until", Float, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Index("uq_webhook_deliveries_event", "webhook_id", "event_id", unique=True),
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
    Column("seq", Integer, nullable=True),  # the agent's event number: a retried event is stored once
    Index("uq_events_deployment_seq", "deployment_id", "seq", unique=True),
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


def storable_text(value: str | None) -> str | None:
    """Free text as stored: PostgreSQL's text types cannot hold NUL, so NUL becomes U+FFFD, on every
    database alike (an agent's log may carry one)."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def matchable(key: str) -> bool:
    """False for a lookup key no stored row can have: one with NUL (PostgreSQL refuses it as a parameter
    instead of matching nothing, as SQLite does)."""
    return "\x00" not in key


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer (several gunicorn workers)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, *, upgrade_schema: bool = True, short_waits: bool = False) -> Engine:
    """Create the engine for `url` and (by default) bring its schema to the newest revision.

    `short_waits`: give up on a busy database within seconds (a lock held elsewhere, a slow statement) instead
    of waiting up to 30 s — for callers that must not stall, like the single-threaded TFTP server."""
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        engine = create_engine(url, connect_args={"timeout": 2 if short_waits else 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # A connection that died (server restart, idle timeout at a proxy) is replaced before use. The pool
        # (SQLAlchemy's default 5 + 10 overflow) is per process: gunicorn forks before the app opens it.
        connect_args = {"options": "-c lock_timeout=2000 -c statement_timeout=5000"} if short_waits else {}
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=connect_args)
    if upgrade_schema:
        try:
            upgrade(engine)
        except OperationalError as exc:  # cannot connect: no server, no such database, refused credentials
            engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "cannot connect"
            raise OperationFailed(f"cannot open the database {engine.url.render_as_string(hide_password=True)}: "
                                  f"{reason}") from None
        except BaseException:
            engine.dispose()
            raise
    return engine


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` found and left: revisions (None: an empty database), and whether the database
    came from before migrations (`legacy_version` is its `schema_version`)."""
    before: str | None
    after: str
    legacy_version: int | None = None


@functools.cache
def _script():
    from alembic.script import ScriptDirectory
    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    return _script().get_current_head()


def _alembic_config(conn: Connection):
    from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn  # env.py migrates on this connection, inside its transaction
    return config


def current_revision(conn: Connection) -> tuple[str | None, int | None]:
    """(revision, legacy schema_version) of the database on `conn`; revision None means empty.

    Refuses (OperationFailed) a revision this code does not know and tables it did not make."""
    from alembic.runtime.migration import MigrationContext
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is not None:
            known = {script.revision for script in _script().walk_revisions()}
            if revision not in known:
                raise OperationFailed(
                    f"the database is at schema revision {revision}, which this metalstream does not know "
                    f"(its newest is {head_revision()}): a newer metalstream wrote it; upgrade metalstream",
                    details={"revision": revision, "head": head_revision()})
            return revision, None
    ours = tables & set(metadata.tables)
    if not ours:
        return None, None
    if "schema_version" not in tables:
        raise OperationFailed(f"the database has tables named like metalstream's ({', '.join(sorted(ours))}) but "
                              "no schema version: not made by metalstream; refusing to change it")
    found = conn.execute(select(schema_version.c.version)).scalars().all()
    version = max(found, default=1)  # releases before migrations created the tables, then recorded 1
    if version not in LEGACY_REVISIONS:
        raise OperationFailed(f"the database says schema_version {version} without a migration revision, which "
                              "this metalstream does not know: a newer metalstream wrote it; upgrade metalstream",
                              details={"schema_version": version})
    return LEGACY_REVISIONS[version], version


@contextmanager
def _exclusive(engine: Engine):
    """A transaction on `engine` that no other metalstream upgrading this database runs beside."""
    lock_fd = None
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        # SQLite: an exclusive flock on the database's directory (no lock file left behind).
        lock_fd = os.open(os.path.dirname(os.path.abspath(engine.url.database)), os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Held until the transaction ends; DDL is transactional, so waiters see all or nothing.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            yield conn
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # releases the flock


def upgrade(engine: Engine) -> Upgrade:
    """Bring the database to the newest revision (see the module's docstring); idempotent."""
    head = head_revision()
    try:  # the common case, checked without any lock: already there
        with engine.connect() as conn:
            if current_revision(conn) == (head, None):
                return Upgrade(head, head)
    except OperationFailed:
        pass  # maybe another process is half-way (SQLite's DDL is not transactional): decided under the lock
    from alembic import command
    with _exclusive(engine) as conn:
        revision, legacy = current_revision(conn)  # again: another process may have upgraded meanwhile
        config = _alembic_config(conn)
        if legacy is not None:
            command.stamp(config, revision)
        if revision != head:
            command.upgrade(config, "head")
    return Upgrade(revision, head, legacy)

