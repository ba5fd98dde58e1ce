"""Revisions say what they change (a message, like a commit's), and an upload identical to the
latest revision makes no duplicate: the hub answers that revision and says so."""

from __future__ import annotations

import pytest

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from tests.fixtures.registry import Hub

pytestmark = pytest.mark.usefixtures("no_leftover_upload_files")


@pytest.fixture
def alice(hub: Hub) -> str:
    return hub.token("alice")


def test_message_is_recorded_and_answered(hub: Hub, alice: str) -> None:
    metadata = {**DEFAULT_METADATA, "message": "  First cut:\ntrained on 2k questions.  "}
    assert hub.upload("alice/trivia", lora_adapter(), token=alice, metadata=metadata).is_success
    hub.upload("alice/trivia", lora_adapter(seed=1), token=alice)  # a revision without one
    detail = hub.client.get("/api/v1/experts/alice/trivia").json()
    assert [row["message"] for row in detail["revisions"]] == [
        "First cut:\ntrained on 2k questions.",
        None,
    ]
    first = hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert first["message"] == "First cut:\ntrained on 2k questions."


@pytest.mark.parametrize(
    ("message", "said"),
    [("", "at least 1 character"), ("x" * 4001, "at most 4000"), ("a\x00b", "control")],
)
def test_bad_message_is_refused_and_stores_nothing(
    hub: Hub, alice: str, message: str, said: str
) -> None:
    metadata = {**DEFAULT_METADATA, "message": message}
    response = hub.upload("alice/trivia", lora_adapter(), token=alice, metadata=metadata)
    assert response.status_code == 422
    assert "message" in response.json()["detail"] and said in response.json()["detail"]
    assert hub.revision_count() == 0 and hub.blob_keys() == set()


def test_identical_upload_answers_the_latest_revision(hub: Hub, alice: str) -> None:
    first = hub.upload("alice/trivia", lora_adapter(), token=alice)
    again = hub.upload("alice/trivia", lora_adapter(), token=alice)
    assert (first.status_code, again.status_code) == (201, 200)
    body = again.json()
    assert (body["revision"], body["blob_sha256"]) == (1, first.json()["blob_sha256"])
    assert first.json()["created"] is True and body["created"] is False
    assert body["warnings"] == [
        "identical to revision 1 (same adapter, compression and metadata): no new revision was made"
    ]
    assert hub.revision_count() == 1


def test_a_new_message_alone_makes_no_revision(hub: Hub, alice: str) -> None:
    hub.upload("alice/trivia", lora_adapter(), token=alice)
    metadata = {**DEFAULT_METADATA, "message": "same thing, new words"}
    again = hub.upload("alice/trivia", lora_adapter(), token=alice, metadata=metadata)
    assert (again.status_code, again.json()["revision"]) == (200, 1)
    latest = hub.client.get("/api/v1/experts/alice/trivia/revisions/latest").json()
    assert latest["message"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"task_description": "Answer trivia questions at length."},
        {"sample_inputs": ["Who painted the Mona Lisa?"]},
        {"tags": ["qa"]},
        {"density": 0.2},  # another blob from the same adapter
    ],
)
def test_changed_metadata_makes_a_revision_sharing_what_it_can(
    hub: Hub, alice: str, change: dict[str, object]
) -> None:
    first = hub.upload("alice/trivia", lora_adapter(), token=alice).json()
    second = hub.upload(
        "alice/trivia", lora_adapter(), token=alice, metadata={**DEFAULT_METADATA, **change}
    )
    assert (second.status_code, second.json()["revision"]) == (201, 2)
    same_blob = second.json()["blob_sha256"] == first["blob_sha256"]
    assert same_blob == ("density" not in change)
    assert hub.blob_keys() == {first["blob_sha256"], second.json()["blob_sha256"]}


def test_only_the_latest_revision_counts(hub: Hub, alice: str) -> None:
    """Going back to revision 1's content is a change from revision 2: a new revision."""
    hub.upload("alice/trivia", lora_adapter(), token=alice)
    hub.upload("alice/trivia", lora_adapter(seed=1), token=alice)
    back = hub.upload("alice/trivia", lora_adapter(), token=alice)
    assert (back.status_code, back.json()["revision"]) == (201, 3)


def test_identical_upload_to_another_expert_is_its_own_revision(hub: Hub, alice: str) -> None:
    first = hub.upload("alice/trivia", lora_adapter(), token=alice).json()
    other = hub.upload("alice/quiz", lora_adapter(), token=alice)
    assert (other.status_code, other.json()["revision"]) == (201, 1)
    assert hub.blob_keys() == {first["blob_sha256"]}
