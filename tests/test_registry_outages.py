"""Outages of the database or the blob store answer 503 (retry later) and commit nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.adapter_files import lora_adapter
from bench.seaweedfs import free_ports
from tests.fixtures.database import database_outage
from tests.fixtures.registry import Hub, open_hub


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """The outage under test is the database's, or a store replaced below: local is enough."""
    return (tmp_path / "blobs").as_uri()


def test_database_outage_answers_503_then_recovers(hub: Hub) -> None:
    token = hub.token("alice")
    hub.app.state.engine.dispose()
    with database_outage(hub.settings.sqlalchemy_url):
        for response in (
            hub.client.get("/healthz"),
            hub.client.get("/api/v1/experts"),
            hub.upload("alice/trivia", lora_adapter(), token=token),
        ):
            assert response.status_code == 503
            assert response.json() == {"detail": "database temporarily unavailable; retry later"}
            assert response.headers["retry-after"]
    assert hub.client.get("/healthz").status_code == 200
    assert hub.revision_count() == 0
    assert hub.blob_keys() == set()


@pytest.fixture
def unreachable_store_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """The same database, with blobs on an S3 endpoint where nothing listens."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    (port,) = free_ports(1)
    dead_endpoint = f"s3://bucket?endpoint_url=http://127.0.0.1:{port}"
    with open_hub(hub.settings.model_copy(update={"blob_store_url": dead_endpoint})) as down:
        yield down


def test_unreachable_blob_store_answers_503_and_commits_nothing(
    hub: Hub, unreachable_store_hub: Hub
) -> None:
    token = hub.token("alice")
    assert hub.upload("alice/trivia", lora_adapter(seed=1), token=token).status_code == 201
    down = unreachable_store_hub
    upload = down.upload("alice/trivia", lora_adapter(seed=2), token=token)
    assert upload.status_code == 503
    assert "blob storage temporarily unavailable" in upload.json()["detail"]
    assert down.client.get("/api/v1/experts/alice/trivia/revisions/1/blob").status_code == 503
    assert hub.revision_count() == 1
