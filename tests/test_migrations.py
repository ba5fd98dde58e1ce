"""The shipped migrations build exactly the models' schema, and servers refuse any other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from registry.api.app import create_app
from registry.db.engine import create_db_engine
from registry.db.models import Base
from registry.db.schema import alembic_config, current_revisions, head_revisions, upgrade_schema
from registry.errors import SchemaOutOfDateError
from registry.settings import Settings
from tests.fixtures.registry import Hub


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def downgrade_to_base(engine: Engine) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_then_upgrade_round_trips(engine: Engine) -> None:
    downgrade_to_base(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revisions(engine) == set()
    upgrade_schema(engine)
    assert current_revisions(engine) == head_revisions()
    assert {table.name for table in Base.metadata.sorted_tables} <= set(
        inspect(engine).get_table_names()
    )


def settings_for(database_url: str, tmp_path: Path, *, auto_upgrade: bool = False) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        blob_store_url=(tmp_path / "blobs").as_uri(),
        auto_upgrade=auto_upgrade,
    )


def test_server_refuses_a_database_without_schema(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    downgrade_to_base(engine)
    with pytest.raises(SchemaOutOfDateError, match="run `compeft-hub db upgrade`"):
        create_app(settings_for(database_url, tmp_path))


def test_server_refuses_a_schema_it_does_not_know(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    try:
        with pytest.raises(SchemaOutOfDateError, match="upgrade compeft-hub"):
            create_app(settings_for(database_url, tmp_path))
    finally:  # the PostgreSQL database is shared by the session: leave it at head
        with engine.begin() as connection:
            command.stamp(alembic_config(connection), "head", purge=True)


def test_auto_upgrade_brings_an_empty_database_to_head(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    downgrade_to_base(engine)
    create_app(settings_for(database_url, tmp_path, auto_upgrade=True))
    assert current_revisions(engine) == head_revisions()


def test_embedded_default_upgrades_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "hub")
    assert settings.auto_upgrade is True
    create_app(settings)
    engine = create_db_engine(settings.sqlalchemy_url)
    assert current_revisions(engine) == head_revisions()
    engine.dispose()
    assert (tmp_path / "hub" / "hub.sqlite3").is_file()


def test_revisions_from_before_0007_read_as_as_trained_and_unmeasured(hub: Hub) -> None:
    created = hub.upload("alice/old", lora_adapter(seed=1), token=hub.token("alice"))
    assert created.status_code == 201, created.text
    assert created.json()["fidelity"]["cosine"]["mean"] > 0
    engine = hub.sessions.kw["bind"]
    with engine.begin() as connection:  # the schema that stored no compression choices
        command.downgrade(alembic_config(connection), "0006")
    upgrade_schema(engine)
    detail = hub.client.get("/api/v1/experts/alice/old/revisions/1").json()
    assert (detail["factorisation"], detail["scale"], detail["fidelity"]) == (
        "as-trained",
        "entry",
        None,
    )
    assert "not measured" in hub.client.get("/experts/alice/old/revisions/1").text


def test_tags_stored_before_0010_take_the_form_new_tags_get(hub: Hub) -> None:
    metadata = {**DEFAULT_METADATA, "tags": ["qa"]}
    created = hub.upload(
        "alice/old", lora_adapter(seed=1), token=hub.token("alice"), metadata=metadata
    )
    assert created.status_code == 201, created.text
    engine = hub.sessions.kw["bind"]
    with engine.begin() as connection:  # tags as the schema before 0010 let them be stored
        command.downgrade(alembic_config(connection), "0009")
        revision_id = connection.execute(text("SELECT id FROM revisions")).scalar_one()
        connection.execute(
            text("INSERT INTO revision_tags (revision_id, tag) VALUES (:id, :tag)"),
            [
                {"id": revision_id, "tag": tag}
                for tag in ("QA", "Question  Answering", "ZÜRICH", "Zürich")
            ],
        )
    upgrade_schema(engine)
    with engine.connect() as connection:
        tags = connection.execute(text("SELECT tag FROM revision_tags ORDER BY tag")).scalars()
        assert list(tags) == ["qa", "question-answering", "zürich"]
    listed = hub.client.get("/api/v1/experts", params={"tag": "Zürich"}).json()
    assert [item["id"] for item in listed["items"]] == ["alice/old"]
