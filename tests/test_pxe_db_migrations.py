"""Schema migrations (pxe/migrations, pxe.db.upgrade) on SQLite and PostgreSQL.

Databases made before migrations existed are rebuilt from tests/data/pxe_db/COMMIT.BACKEND.sql —
every statement that release's `pxe/db.py` ran on an empty database — filled with rows the way
that release stored them, and upgraded by the real `metalstream db upgrade`: nothing may be lost.
"""
from __future__ import annotations

import hashlib
import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from sqlalchemy import MetaData, Table, create_engine, inspect, select, text

from conftest import METALSTREAM, run_cli
from fixtures_pxe import DATABASES

DUMPS = Path(__file__).parent / "data" / "pxe_db"
SEPARATOR = ";\n\n"
HEAD = "0007"
# Columns later revisions add to old tables, with the value old rows get.
ADDED_COLUMNS = {"events": {"seq": None},
                 "deployments": {"boot_path": None, "first_stage": None, "installer_secure_boot": None,
                                 "target_secure_boot": None, "machine_id": None, "power_claimed_at": None,
                                 "powered_at": None, "boot_restored_at": None,
                                 "encryption_passphrase_sealed": None}}


def _without(rows: list[dict], columns) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in columns} for row in rows]
LEGACY_TABLES = {
    "34d2900": ("schema_version", "images", "deployments", "events", "api_tokens"),
    "2111604": ("schema_version", "images", "deployments", "events", "api_tokens", "audit_log", "auth_failures"),
}
ADMIN_SECRET = "old-admin-secret-kept-across-the-upgrade"


@dataclass
class Database:
    backend: str
    data_dir: Path
    url: str
    options: list[str]  # what `metalstream db upgrade` / `serve` are given to use it
    another: Callable[[], str]  # the URL of one more empty database on the same backend


@pytest.fixture(params=DATABASES)
def database(request, tmp_path) -> Database:
    """A new, empty database: the SQLite file of a data directory, or a PostgreSQL database."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "sqlite":
        counter = itertools.count()
        return Database("sqlite", data_dir, f"sqlite:///{data_dir / 'metalstream.db'}", ["--data-dir", str(data_dir)],
                        lambda: f"sqlite:///{tmp_path / f'other-{next(counter)}.db'}")
    make = request.getfixturevalue("pg_database")
    url = make()
    return Database("postgresql", data_dir, url, ["--data-dir", str(data_dir), "--db", url], make)


def legacy_statements(commit: str, backend: str) -> list[str]:
    dump = (DUMPS / f"{commit}.{backend}.sql").read_text()
    code = "\n".join(line for line in dump.splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in code.split(SEPARATOR) if statement.strip()]


def make_legacy_database(url: str, commit: str, backend: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in legacy_statements(commit, backend):
            conn.exec_driver_sql(statement)
    engine.dispose()


def fill_legacy_rows(url: str, commit: str) -> dict:
    """Rows as the old release stored them: an image, deployments in every state with their events,
    tokens, idempotency keys (a raw client key, as before per-token keys, and a scoped sha256)."""
    from pxe import deployments
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = {name: Table(name, MetaData(), autoload_with=conn) for name in LEGACY_TABLES[commit]}
        manifest = {"format": "metalstream-image/1", "name": "debian-minimal", "size": 5 << 30,
                    "sha256": "ab" * 32, "packages": ["systemd", "openssh-server"], "kernel": {"version": "6.1.0"}}
        conn.execute(tables["images"].insert().values(name="debian-minimal", sha256="ab" * 32, size=5 << 30,
                                                       filename="debian-minimal.tar.zst", manifest=manifest,
                                                       created_at=1_700_000_000.125))
        request = {"mac": "52:54:00:00:00:01", "image": "debian-minimal", "hostname": "node-1",
                   "kernel_args": ["console=ttyS0,115200"], "root_password_hash": "$6$salt$hash"}
        base = 1_700_000_100.5
        specs = [  # id suffix, state, open?, extra columns
            ("01", "pending", True, {"idempotency_key": "cmdb-ticket-4711"}),
            ("02", "booting", True, {"token_hash": "cd" * 32, "last_seen_at": base + 2.25,
                                     "idempotency_key": hashlib.sha256(b"abc\0run-42").hexdigest()}),
            ("03", "installing", True, {"phase": "stream", "message": "streaming", "bytes_done": 3_000_000_000,
                                        "bytes_total": 5 << 30, "stream_started_at": base + 3.5,
                                        "agent_address": "2001:db8::17", "last_seen_at": base + 9.75}),
            ("04", "installed", True, {"phase": "finish", "root_uuid": "0b5f1c4e-8d3a-4c2e-9f1a-1234567890ab",
                                       "log": "line 1\nüñí©ødé ✓\n" * 50, "installed_at": base + 40.0,
                                       "check_after": base + 55.0}),
            ("05", "active", False, {"check_message": "deployment.json, image and root UUID match"}),
            ("06", "failed", False, {"phase": "disk", "error": "no disk matches the hints"}),
            ("07", "cancelled", False, {}),
        ]
        for n, (suffix, state, is_open, extra) in enumerate(specs):
            mac = f"52:54:00:00:00:{suffix}"
            body = {**request, "mac": mac, "hostname": f"node-{suffix}"}
            conn.execute(tables["deployments"].insert().values(
                id=f"00000000-0000-4000-8000-0000000000{suffix}", mac=mac, open_mac=mac if is_open else None,
                request_sha256=deployments.request_digest(body), image_name="debian-minimal", request=body,
                storage={"clearpart": {"all": True}, "parts": [{"mount": "/", "fstype": "ext4", "grow": True}]},
                state=state, created_at=base + n, updated_at=base + n + 0.5, **extra))
            for k, event_state in enumerate(["pending", state] if state != "pending" else ["pending"]):
                later = extra if k else {}
                conn.execute(tables["events"].insert().values(  # no explicit id: sequences must go on after
                    deployment_id=f"00000000-0000-4000-8000-0000000000{suffix}", time=base + n + k / 4,
                    state=event_state, phase=later.get("phase"), message=f"event {k} of {suffix}",
                    bytes_done=later.get("bytes_done"), bytes_total=later.get("bytes_total")))
        conn.execute(tables["api_tokens"].insert().values(
            id="a1b2c3d4e5f6", scope="admin", secret_sha256=hashlib.sha256(ADMIN_SECRET.encode()).hexdigest(),
            comment=None, created_at=base, revoked=False))
        conn.execute(tables["api_tokens"].insert().values(
            id="0f0e0d0c0b0a", scope="read", secret_sha256="ef" * 32, comment="dashboard — Zürich", created_at=base,
            revoked=True))
        if "audit_log" in tables:
            conn.execute(tables["audit_log"].insert().values(time=base, token_id="a1b2c3d4e5f6", client="127.0.0.1",
                                                             action="POST /api/v1/deployments",
                                                             target="00000000-0000-4000-8000-000000000001", status=201))
            conn.execute(tables["auth_failures"].insert().values(client="192.0.2.7", window_start=base, failures=3,
                                                                 blocked_until=None))
    engine.dispose()
    return request


def snapshot(url: str, tables=None) -> dict:
    """Every row of every table (or of `tables`), read back through reflection, in primary-key order."""
    engine = create_engine(url)
    with engine.connect() as conn:
        names = tables or sorted(inspect(conn).get_table_names())
        out = {}
        for name in names:
            table = Table(name, MetaData(), autoload_with=conn)
            out[name] = [dict(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                         .mappings()]
    engine.dispose()
    return out


def schema_of(url: str) -> dict:
    """Tables with their columns, indexes, unique constraints, keys (what `compare` can miss: names)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        inspector = inspect(conn)
        out = {table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes(table)),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "primary": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign": [(f["constrained_columns"], f["referred_table"], f["referred_columns"])
                        for f in inspector.get_foreign_keys(table)],
        } for table in inspector.get_table_names()}
    engine.dispose()
    return out


def schema_differences(url: str) -> list:
    """What Alembic's autogenerate finds between the database and pxe.db's tables (empty: equal)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from pxe import db
    engine = create_engine(url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
    engine.dispose()
    return differences


def scalar(url: str, query: str):
    engine = create_engine(url)
    with engine.connect() as conn:
        values = conn.execute(text(query)).scalars().all()
    engine.dispose()
    return values


def db_upgrade(options: list[str]) -> subprocess.CompletedProcess:
    return run_cli("db", "upgrade", *options, timeout=120)


def test_an_empty_database_gets_every_migration_and_matches_the_tables(database):
    url = database.url
    result = db_upgrade(database.options)
    assert result.returncode == 0, result.stderr
    assert f"empty; schema created at revision {HEAD}" in result.stdout
    assert schema_differences(url) == []
    assert scalar(url, "SELECT version_num FROM alembic_version") == [HEAD]
    # A metalstream from before migrations reads this and refuses the database (its limit was 1).
    assert scalar(url, "SELECT version FROM schema_version") == [7]


@pytest.mark.parametrize("commit", sorted(LEGACY_TABLES))
def test_a_database_from_before_migrations_is_upgraded_and_loses_nothing(database, commit):
    from pxe import audit, authguard, db, deployments, tokens
    from pxe.config import ServiceConfig
    from pxe.errors import Conflict, TooManyRequests
    url = database.url
    make_legacy_database(url, commit, database.backend)
    request = fill_legacy_rows(url, commit)
    before = snapshot(url)
    assert sorted(before) == sorted(LEGACY_TABLES[commit])

    result = db_upgrade(database.options)
    assert result.returncode == 0, result.stderr
    assert f"schema_version 1 from before migrations (revision 0001) upgraded to revision {HEAD}" in result.stdout

    after = snapshot(url, sorted(before))
    for table in before:
        if table != "schema_version":
            assert _without(after[table], ADDED_COLUMNS.get(table, {})) == before[table], table
            assert all(row[column] == value for row in after[table]  # added columns hold their defaults
                       for column, value in ADDED_COLUMNS.get(table, {}).items()), table
    assert after["schema_version"] == [{"version": 7}]
    assert scalar(url, "SELECT version_num FROM alembic_version") == [HEAD]
    # The upgraded database is the schema a new database gets, names of indexes and constraints included.
    assert schema_differences(url) == []
    fresh_url = database.another()
    db.make_engine(fresh_url).dispose()
    assert schema_of(url) == schema_of(fresh_url)

    # The service works on the old rows and the new tables.
    engine = db.make_engine(url)
    try:
        shown = deployments.get(engine, "00000000-0000-4000-8000-000000000004", with_log=True)
        assert shown["state"] == "installed" and shown["log"].startswith("line 1\nüñí©ødé ✓\n")
        assert [e["state"] for e in shown["events"]] == ["pending", "installed"]
        assert deployments.get(engine, "00000000-0000-4000-8000-000000000003")["eta_seconds"] is not None
        assert tokens.authenticate_api_token(engine, f"msa_a1b2c3d4e5f6_{ADMIN_SECRET}") == {
            "id": "a1b2c3d4e5f6", "scope": "admin"}
        assert {t["id"]: t["revoked"] for t in tokens.list_api_tokens(engine)} == {
            "a1b2c3d4e5f6": False, "0f0e0d0c0b0a": True}
        replay, created = deployments.create(engine, {**request, "mac": "52:54:00:00:00:01", "hostname": "node-01"},
                                             None, "cmdb-ticket-4711")
        assert (replay["id"], created) == ("00000000-0000-4000-8000-000000000001", False)
        with pytest.raises(Conflict):  # still one open deployment per MAC
            deployments.create(engine, {**request, "mac": "52:54:00:00:00:02"}, None, None)
        new, created = deployments.create(engine, {**request, "mac": "52:54:00:00:00:99"}, None, "new-key")
        assert created and [e["state"] for e in new["events"]] == ["pending"]  # event ids go on after the old ones
        audit.record(engine, token_id="a1b2c3d4e5f6", client="127.0.0.1", action="DELETE /api/v1/images/<name>",
                     target="debian-minimal", status=409)
        assert audit.entries(engine, limit=1)[0]["status"] == 409
        config = ServiceConfig(data_dir=database.data_dir, auth_max_failures=2)
        for _ in range(2):
            authguard.record_failure(engine, config, "198.51.100.1", "api")
        with pytest.raises(TooManyRequests):
            authguard.check_not_blocked(engine, "198.51.100.1")
    finally:
        engine.dispose()


def test_upgrading_twice_changes_nothing(database):
    url = database.url
    make_legacy_database(url, "34d2900", database.backend)
    fill_legacy_rows(url, "34d2900")
    assert db_upgrade(database.options).returncode == 0
    rows, schema = snapshot(url), schema_of(url)
    again = db_upgrade(database.options)
    assert again.returncode == 0, again.stderr
    assert f"already at revision {HEAD}" in again.stdout and "nothing to do" in again.stdout
    assert snapshot(url) == rows and schema_of(url) == schema


def test_a_database_from_a_newer_metalstream_is_refused_and_left_alone(database, pxe_installer):
    from metalstream.errors import OperationFailed

    from pxe import db
    url, options = database.url, database.options
    assert db_upgrade(options).returncode == 0
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    rows = snapshot(url)

    result = db_upgrade(options)
    assert result.returncode == 1
    assert "schema revision 0099, which this metalstream does not know" in result.stderr
    assert "a newer metalstream wrote it; upgrade metalstream" in result.stderr
    with pytest.raises(OperationFailed, match="0099"):
        db.make_engine(url)
    served = subprocess.run([*METALSTREAM, "serve", *options, "--bind", "127.0.0.1:1", "--installer", pxe_installer],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 1 and "0099" in served.stderr, served.stderr
    assert snapshot(url) == rows


def test_unknown_schema_versions_and_foreign_tables_are_refused(database):
    url, options = database.url, database.options
    make_legacy_database(url, "34d2900", database.backend)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = 3"))
    engine.dispose()
    result = db_upgrade(options)
    assert result.returncode == 1 and "schema_version 3" in result.stderr and "newer metalstream" in result.stderr
    assert scalar(url, "SELECT version FROM schema_version") == [3]
    assert "alembic_version" not in snapshot(url)

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE schema_version"))
    engine.dispose()
    result = db_upgrade(options)
    assert result.returncode == 1 and "not made by metalstream" in result.stderr


@pytest.mark.parametrize("start", ["empty", "34d2900"])
def test_concurrent_upgrades_migrate_once(database, start):
    """Replicas starting together on one database: one migrates, the others wait and find it done."""
    url, options = database.url, database.options
    if start != "empty":
        make_legacy_database(url, start, database.backend)
        fill_legacy_rows(url, start)
    rows = {t: r for t, r in snapshot(url).items() if t != "schema_version"}
    children = [subprocess.Popen([*METALSTREAM, "db", "upgrade", *options], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(child.wait(120), *child.communicate()) for child in children]
    assert [code for code, _, _ in results] == [0] * 4, results
    outputs = [out for _, out, _ in results]
    assert sum("already at revision" in out for out in outputs) == 3, outputs
    assert schema_differences(url) == []
    after = snapshot(url)
    assert {t: _without(after[t], ADDED_COLUMNS.get(t, {})) for t in rows} == rows
    assert after["schema_version"] == [{"version": 7}] and after["alembic_version"] == [{"version_num": HEAD}]


def test_the_legacy_dumps_are_what_they_claim():
    """A cheap guard on the checked-in dumps: schema_version 1 recorded, the tables of each commit."""
    for commit, tables in LEGACY_TABLES.items():
        for backend in DATABASES:
            statements = legacy_statements(commit, backend)
            created = [s.split()[2] for s in statements if s.startswith("CREATE TABLE")]
            assert sorted(created) == sorted(tables), (commit, backend)
            assert statements[-1].startswith("INSERT INTO schema_version (version) VALUES (1")
