"""Alembic environment: migrates the connection `pxe.db.upgrade` hands over (inside its transaction),
or, from Alembic's command line, the URL given with `-x url=...`."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from pxe import db

config = context.config


def _configure(**options) -> None:
    context.configure(target_metadata=db.metadata, compare_type=True, **options)


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=SQLALCHEMY_URL ...")
    return url


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # pxe.db.upgrade: its transaction (and lock) covers the whole upgrade
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
