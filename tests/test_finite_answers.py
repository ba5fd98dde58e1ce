"""The hub never answers a non-finite number, and one bad row never breaks search for everyone.

JSON has no infinity: pydantic writes `null`, which breaks the OpenAPI schema the API publishes,
and the client then refuses the whole answer. The hostile pass got `alpha: 1e39` past validation
(finite as a float64, infinite once stored as float32) and every search whose top k held that
expert failed. Uploads now refuse such numbers (422); rows stored before that are left out of
search and answered with a message.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from registry.db.models import Expert, Revision
from tests.fixtures.registry import Hub

SEARCH = {"query": DEFAULT_METADATA["task_description"], "base_model": "tiny/llama", "k": 5}


@pytest.mark.parametrize("alpha", [1e39, -1.0, 0.0])
@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_an_alpha_that_is_not_a_positive_float32_is_refused(hub: Hub, alpha: float) -> None:
    token = hub.token("alice")
    metadata = {**DEFAULT_METADATA, "alpha": alpha}
    response = hub.upload("alice/loud", lora_adapter(), token=token, metadata=metadata)
    assert response.status_code == 422
    assert "alpha" in response.json()["detail"]
    assert hub.revision_count() == 0 and hub.blob_keys() == set()


def _corrupt_alpha_of(hub: Hub, name: str) -> None:
    """What an upload before the fix stored: an alpha that overflowed float32."""
    with hub.sessions() as session:
        expert_ids = session.query(Expert.id).filter(Expert.name == name).scalar_subquery()
        session.execute(
            update(Revision)
            .where(Revision.expert_id.in_(expert_ids))
            .values(alpha_max=float("inf"), alpha_mean=float("inf"))
        )
        session.commit()


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_search_leaves_out_a_row_with_an_infinite_value_and_answers_the_rest(hub: Hub) -> None:
    token = hub.token("alice")
    for seed, name in enumerate(("good", "poisoned")):
        assert hub.upload(f"alice/{name}", lora_adapter(seed=seed), token=token).status_code == 201
    _corrupt_alpha_of(hub, "poisoned")

    response = hub.client.post("/api/v1/search", json=SEARCH)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["id"] for result in results] == ["alice/good"]
    assert [result["rank"] for result in results] == [1]
    assert results[0]["revision"]["default_alpha"]["max"] is not None


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_a_row_with_an_infinite_value_is_answered_with_a_message_never_with_null(
    hub: Hub,
) -> None:
    token = hub.token("alice")
    assert hub.upload("alice/poisoned", lora_adapter(), token=token).status_code == 201
    _corrupt_alpha_of(hub, "poisoned")
    response = hub.client.get("/api/v1/experts/alice/poisoned/revisions/latest")
    assert response.status_code == 500
    assert "upload the adapter again" in response.json()["detail"]
