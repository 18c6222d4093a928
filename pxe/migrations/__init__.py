"""Alembic migrations of the service's database (run by `pxe.db.upgrade`; no alembic.ini needed).

`metalstream serve` and every `metalstream image|token ...` bring the database to the newest
revision on start; `metalstream db upgrade` does it explicitly and says from which revision to which.

A schema change is a new file in `versions/` (`revision` = the next number, `down_revision` = the
previous head) plus the same change to the tables in `pxe/db.py`; tests/test_pxe_db_migrations.py
fails while the two differ (on SQLite and on PostgreSQL). Alembic's own command line works too, e.g.

    .venv/bin/alembic -c pxe/migrations/alembic.ini -x url=sqlite:////tmp/ms.db revision --autogenerate -m "..."

Migrations run inside the caller's transaction (PostgreSQL has transactional DDL) with only Core
and `op` calls: never import the service's storage modules from a migration.
"""
