"""Write COMMIT.BACKEND.sql here: every statement the service's `pxe/db.py` of COMMIT ran on an empty
database (SQLite, PostgreSQL) when it started, i.e. the schema as those releases created it, before
migrations existed. tests/test_pxe_db_migrations.py replays them (no git history needed at test time).

Run once from the repository root (needs the commits in git and Debian's postgresql package):
    .venv/bin/python tests/data/pxe_db/make_legacy_dumps.py
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from lab.pg import PgCluster  # noqa: E402

# 34d2900: the schema the issue names (images, deployments, events, api_tokens, schema_version 1).
# 2111604: the same plus audit_log and auth_failures, still schema_version 1 (up to migrations).
COMMITS = ("34d2900", "2111604")
SEPARATOR = ";\n\n"


def old_db_module(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:pxe/db.py"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"old_db_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def literal(conn, statement: str, parameters) -> str:
    if not parameters:
        return statement
    if conn.dialect.name == "postgresql":
        import psycopg
        return psycopg.ClientCursor(conn.connection.dbapi_connection).mogrify(statement, parameters)
    for value in parameters:
        assert isinstance(value, int), value
        statement = statement.replace("?", str(value), 1)
    return statement


def capture(module, url: str) -> list[str]:
    statements = []

    def record(conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith(("CREATE", "INSERT", "ALTER", "DROP", "UPDATE", "DELETE")):
            statements.append(literal(conn, statement.strip(), parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        module.make_engine(url).dispose()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return statements


def snapshot(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        inspector = inspect(conn)
        out = {}
        for table in sorted(inspector.get_table_names()):
            out[table] = (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                sorted(str(i) for i in inspector.get_indexes(table)),
                sorted(str(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                inspector.get_pk_constraint(table)["constrained_columns"],
                [(f["constrained_columns"], f["referred_table"]) for f in inspector.get_foreign_keys(table)],
                conn.execute(text(f"SELECT * FROM {table}")).all(),
            )
    engine.dispose()
    return out


def statements_of(dump: str) -> list[str]:
    """The statements of a dump (comment lines dropped); the test reads the dumps the same way."""
    code = "\n".join(line for line in dump.splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in code.split(SEPARATOR) if statement.strip()]


def replay(url: str, dump: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements_of(dump):
            conn.exec_driver_sql(statement)
    engine.dispose()


def main() -> None:
    cluster = PgCluster.start()
    try:
        for commit in COMMITS:
            module = old_db_module(commit)
            for backend in ("sqlite", "postgresql"):
                work = Path(tempfile.mkdtemp())
                if backend == "sqlite":
                    direct, replayed = f"sqlite:///{work}/direct.db", f"sqlite:///{work}/replayed.db"
                else:
                    direct = cluster.create_database(f"direct_{commit}")
                    replayed = cluster.create_database(f"replayed_{commit}")
                statements = capture(module, direct)
                header = (f"-- Every statement pxe/db.py of commit {commit} ran when it started on an empty {backend} "
                          f"database\n-- (made by tests/data/pxe_db/make_legacy_dumps.py; replayed by "
                          f"tests/test_pxe_db_migrations.py)\n-- Statements end with a semicolon and a blank line.")
                dump = header + "\n\n" + SEPARATOR.join(statements) + SEPARATOR
                replay(replayed, dump)
                assert snapshot(direct) == snapshot(replayed), (commit, backend)
                (HERE / f"{commit}.{backend}.sql").write_text(dump)
                print(f"{commit}.{backend}.sql: {len(statements)} statements, replay verified")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
