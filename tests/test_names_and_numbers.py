"""Names are case-insensitive, and a revision number of a name is never given to other bytes.

Users and an owner's live experts are unique regardless of case, in code (a 409 naming the one
that exists) and in the database (unique indexes on lower(name), which also settle races). Lookups
stay exact. An expert re-created after a delete numbers its revisions after its predecessors', so
a blob URL, served as immutable, never changes meaning.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, event, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from registry.db.engine import create_db_engine
from registry.db.models import Expert, User, utc_now
from registry.db.schema import alembic_config, current_revisions, head_revisions, upgrade_schema
from registry.errors import ConflictError, SchemaOutOfDateError
from registry.services.accounts import create_user
from tests.fixtures.registry import Hub, auth

LOCAL_ONLY = pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
CASE_INDEXES = ("uq_users_lower_name", "uq_experts_live_owner_lower_name")


@pytest.fixture
def alice(hub: Hub) -> str:
    return hub.token("alice")


def delete(hub: Hub, expert: str, token: str) -> None:
    assert hub.client.delete(f"/api/v1/experts/{expert}", headers=auth(token)).status_code == 204


@LOCAL_ONLY
@pytest.mark.parametrize("look_alike", ["Alice", "ALICE", "aLiCe"])
def test_user_name_differing_only_by_case_is_refused(hub: Hub, look_alike: str) -> None:
    with hub.sessions() as session:
        create_user(session, name="alice")
        with pytest.raises(ConflictError, match=f"^user '{look_alike}' exists as 'alice'"):
            create_user(session, name=look_alike)
        with pytest.raises(ConflictError, match="^user 'alice' already exists$"):
            create_user(session, name="alice")


@LOCAL_ONLY
def test_user_names_differing_by_more_than_case_coexist(hub: Hub) -> None:
    with hub.sessions() as session:
        for name in ("alice", "alice2", "alice_"):
            create_user(session, name=name)


def test_expert_name_differing_only_by_case_is_refused(hub: Hub, alice: str) -> None:
    first = hub.upload("alice/trivia", lora_adapter(seed=1), token=alice).json()
    response = hub.upload("alice/Trivia", lora_adapter(seed=2), token=alice)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "alice/Trivia conflicts with the existing expert alice/trivia: names are case-insensitive"
    )
    assert hub.revision_count() == 1
    assert hub.blob_keys() == {first["blob_sha256"]}
    assert hub.upload("alice/trivia", lora_adapter(seed=2), token=alice).status_code == 201


def test_other_owners_may_use_the_same_name_in_any_case(hub: Hub, alice: str) -> None:
    assert hub.upload("alice/trivia", lora_adapter(), token=alice).status_code == 201
    assert hub.upload("bob/Trivia", lora_adapter(), token=hub.token("bob")).status_code == 201


def test_deleted_name_may_be_reused_in_another_case(hub: Hub, alice: str) -> None:
    hub.upload("alice/Trivia", lora_adapter(seed=1), token=alice)
    delete(hub, "alice/Trivia", alice)
    response = hub.upload("alice/trivia", lora_adapter(seed=2), token=alice)
    assert response.status_code == 201, response.text
    assert response.json()["revision"] == 2  # numbered after alice/Trivia's, as the same name
    assert hub.client.get("/api/v1/experts/alice/trivia").status_code == 200


@LOCAL_ONLY
def test_lookups_stay_exact(hub: Hub, alice: str) -> None:
    hub.upload("alice/trivia", lora_adapter(), token=alice)
    for path in ("Alice/trivia", "alice/Trivia", "alice/TRIVIA/revisions/1"):
        assert hub.client.get(f"/api/v1/experts/{path}").status_code == 404, path


def test_blob_url_of_a_re_created_expert_never_serves_other_bytes(hub: Hub, alice: str) -> None:
    hub.upload("alice/x", lora_adapter(seed=1), token=alice)
    delete(hub, "alice/x", alice)
    new = hub.upload("alice/x", lora_adapter(seed=2), token=alice).json()
    assert new["revision"] == 2
    assert hub.client.get("/api/v1/experts/alice/x/revisions/1/blob").status_code == 404
    assert hub.client.get("/api/v1/experts/alice/x/revisions/1").status_code == 404
    blob = hub.client.get("/api/v1/experts/alice/x/revisions/2/blob")
    assert blob.status_code == 200
    assert hashlib.sha256(blob.content).hexdigest() == new["blob_sha256"]


def test_numbers_continue_after_every_deleted_expert_of_the_name(hub: Hub, alice: str) -> None:
    for seed in range(3):
        hub.upload("alice/x", lora_adapter(seed=seed), token=alice)
    delete(hub, "alice/x", alice)
    hub.upload("alice/x", lora_adapter(seed=3), token=alice)
    delete(hub, "alice/x", alice)
    assert hub.upload("alice/x", lora_adapter(seed=4), token=alice).json()["revision"] == 5
    expert = hub.client.get("/api/v1/experts/alice/x").json()
    assert [row["revision"] for row in expert["revisions"]] == [5]
    assert expert["revision_count"] == 1
    assert hub.upload("alice/other", lora_adapter(), token=alice).json()["revision"] == 1


def test_parent_revision_of_a_re_created_expert(hub: Hub, alice: str) -> None:
    hub.upload("alice/x", lora_adapter(seed=1), token=alice)
    delete(hub, "alice/x", alice)
    new = {**DEFAULT_METADATA, "parent_revision": 0}  # 0: the expert must not exist yet
    response = hub.upload("alice/x", lora_adapter(seed=2), token=alice, metadata=new)
    assert (response.status_code, response.json()["revision"]) == (201, 2), response.text
    stale = hub.upload("alice/x", lora_adapter(seed=3), token=alice, metadata=new)
    assert stale.status_code == 409
    assert "latest revision of alice/x is 2" in stale.json()["detail"]
    following = {**DEFAULT_METADATA, "parent_revision": 2}
    response = hub.upload("alice/x", lora_adapter(seed=3), token=alice, metadata=following)
    assert response.json()["revision"] == 3


@pytest.fixture
def expert_created_in_another_case_meanwhile(hub: Hub, alice: str) -> Iterator[list[str]]:
    """Before the upload's first INSERT of an expert, another request commits `alice/trivia`.

    So the upload's check has passed and only the database's index can refuse it. Yields the
    statements intercepted, to show the race happened.
    """
    engine: Engine = hub.app.state.engine
    intercepted: list[str] = []

    def commit_a_rival(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if intercepted or not statement.startswith("INSERT INTO experts"):
            return
        intercepted.append(statement)
        with Session(engine) as rival:
            owner = rival.scalars(select(User).where(User.name == "alice")).one()
            rival.add(Expert(owner=owner, name="trivia"))
            rival.commit()

    event.listen(engine, "before_cursor_execute", commit_a_rival)
    yield intercepted
    event.remove(engine, "before_cursor_execute", commit_a_rival)


@LOCAL_ONLY
def test_concurrent_creation_in_another_case_ends_as_a_clear_conflict(
    hub: Hub, alice: str, expert_created_in_another_case_meanwhile: list[str]
) -> None:
    response = hub.upload("alice/Trivia", lora_adapter(), token=alice)
    assert expert_created_in_another_case_meanwhile, "the rival never ran"
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "alice/Trivia conflicts with the existing expert alice/trivia: names are case-insensitive"
    )
    assert hub.revision_count() == 0
    assert hub.blob_keys() == set()


# The migration. Alembic cannot compare expression indexes on SQLite (it warns and skips them in
# tests/test_migrations.py), so these check on both databases what upgrade builds.


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def index_definition(connection: Connection, name: str) -> str | None:
    if connection.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    found: str | None = connection.execute(text(query), {"name": name}).scalar()
    return found


def test_upgrade_creates_the_case_insensitive_indexes(engine: Engine) -> None:
    with engine.connect() as connection:
        users, experts = (index_definition(connection, name) for name in CASE_INDEXES)
    assert users is not None and experts is not None
    assert "UNIQUE" in users and "lower(" in users
    assert "UNIQUE" in experts and "lower(" in experts and "deleted_at IS NULL" in experts


def test_indexes_refuse_names_differing_only_by_case(engine: Engine) -> None:
    with Session(engine) as session:
        alice = User(name="alice")
        session.add_all([alice, Expert(owner=alice, name="trivia")])
        session.commit()
        session.add(Expert(owner=alice, name="Trivia", deleted_at=utc_now()))  # deleted: allowed
        session.commit()
        for row in (User(name="Alice"), Expert(owner=alice, name="TRIVIA")):
            session.add(row)
            with pytest.raises(IntegrityError):
                session.commit()
            session.rollback()


def test_upgrade_lists_existing_collisions_and_stops(engine: Engine) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    try:
        with engine.begin() as connection:  # SQL of schema 0004: the models are at head
            users = "INSERT INTO users (name, created_at) VALUES (:name, :now)"
            experts = (
                "INSERT INTO experts (owner_id, name, latest_revision, created_at, deleted_at) "
                "SELECT id, :name, 0, :now, :deleted FROM users WHERE name = 'carol'"
            )
            now = utc_now()
            for name in ("bob", "Bob", "carol"):
                connection.execute(text(users), {"name": name, "now": now})
            for name, deleted in (("qa", None), ("QA", None), ("old", now), ("OLD", None)):
                # a deleted look-alike is no collision
                connection.execute(text(experts), {"name": name, "now": now, "deleted": deleted})
        with pytest.raises(SchemaOutOfDateError) as refused:
            upgrade_schema(engine)
        listed = re.search(r"users (.+); live experts (.+?)\. ", str(refused.value))
        assert listed is not None, refused.value
        assert set(listed[1].split(", ")) == {"bob", "Bob"}  # in the database's collation order
        assert set(listed[2].split(", ")) == {"carol/qa", "carol/QA"}
        assert "rename" in str(refused.value) and "compeft-hub db upgrade" in str(refused.value)
        assert current_revisions(engine) == {"0004"}
        with engine.begin() as connection:
            connection.execute(text("UPDATE users SET name = 'bob_2' WHERE name = 'Bob'"))
            connection.execute(text("UPDATE experts SET name = 'qa_2' WHERE name = 'QA'"))
        upgrade_schema(engine)
        assert current_revisions(engine) == head_revisions()
    finally:  # the PostgreSQL database is shared by the session: leave it at head
        if current_revisions(engine) != head_revisions():
            with engine.begin() as connection:
                connection.execute(text("DELETE FROM experts"))
                connection.execute(text("DELETE FROM users"))
            upgrade_schema(engine)
