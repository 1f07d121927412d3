"""Migrations: the same schema on SQLite and PostgreSQL, matching the models, safe to rerun."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from bot.infra.db import make_engine, migrate
from bot.infra.models import Base
from tests.conftest import Database

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_match_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_migrating_again_changes_nothing(database: Database) -> None:
    migrate(database.engine)
    assert set(inspect(database.engine).get_table_names()) >= {"alembic_version", "due_work"}


def test_processes_starting_together_migrate_in_turn(database: Database, tmp_path: Path) -> None:
    if database.backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        drop = None
    else:
        schema = f"m_{uuid.uuid4().hex[:10]}"
        with database.engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{database.url}?options=-csearch_path%3D{schema}"
        drop = schema
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url}
    try:
        children = [subprocess.Popen([sys.executable, "-m", "bot", "migrate"], env=env,
                                     cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for _ in range(3)]
        results = [(child.wait(timeout=60), child.stderr.read()) for child in children]
        assert [code for code, _ in results] == [0, 0, 0], results
        engine = make_engine(url)
        assert "due_work" in inspect(engine).get_table_names()
        engine.dispose()
    finally:
        if drop:
            with database.engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{drop}" CASCADE'))
