"""The claim protocol, step by step, on each database and blob store (see registry.services.blob_claims).

The live two-process test (test_faults_identical_uploads.py) shows that nothing acknowledged is
lost under load; these tests pin each interleaving that it can only hit by chance.
"""

from __future__ import annotations

import hashlib
import io
import threading
from datetime import timedelta
from typing import cast

import pytest
from sqlalchemy import select, update

from bench.adapter_files import lora_adapter
from registry.db.models import BlobClaim, utc_now
from registry.services.blob_claims import CLAIM_TTL, abandon, claim, release
from registry.services.fsck import fsck
from storage import BlobStore
from tests.fixtures.registry import Hub

BLOB = b"the same compressed bytes, put by two uploads"
KEY = hashlib.sha256(BLOB).hexdigest()
LOCK_WAIT_S = 0.5


def _put(store: BlobStore) -> None:
    store.put_stream(KEY, io.BytesIO(BLOB), sha256=KEY, size=len(BLOB))


def _writers(hub: Hub) -> int | None:
    with hub.sessions() as session:
        return session.scalar(select(BlobClaim.writers).where(BlobClaim.sha256 == KEY))


def test_a_writer_giving_up_keeps_the_blob_another_writer_put_and_has_not_committed(
    hub: Hub,
) -> None:
    with hub.sessions() as committing, hub.sessions() as failing:
        claim(committing, KEY)
        _put(hub.store)
        claim(failing, KEY)
        _put(hub.store)
        abandon(failing, hub.store, KEY)
        assert hub.store.get_bytes(KEY) == BLOB
        assert _writers(hub) == 1
        release(committing, KEY)  # what the revision's transaction does
        committing.commit()
    assert _writers(hub) is None  # no writer left: the row is gone
    assert hub.store.get_bytes(KEY) == BLOB


def test_the_last_writer_giving_up_deletes_a_blob_nothing_references(hub: Hub) -> None:
    with hub.sessions() as session:
        claim(session, KEY)
        _put(hub.store)
        abandon(session, hub.store, KEY)
    assert not hub.store.exists(KEY)
    assert _writers(hub) is None


def test_giving_up_keeps_a_blob_a_committed_revision_references(hub: Hub) -> None:
    token = hub.token("alice")
    sha256 = hub.upload("alice/kept", lora_adapter(), token=token).json()["blob_sha256"]
    with hub.sessions() as session:
        claim(session, sha256)
        abandon(session, hub.store, sha256)
    assert hub.store.exists(sha256)


class _DeletePausedStore:
    """Stands in for the store in `abandon`: announces the delete, waits, then deletes for real."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.deleting = threading.Event()
        self.resume = threading.Event()

    def delete(self, key: str) -> None:
        self.deleting.set()
        self.resume.wait(30)
        self.store.delete(key)


def test_a_new_claim_waits_until_a_deleting_writer_has_removed_the_blob(hub: Hub) -> None:
    """The window the hostile pass found: check "unreferenced", then delete. A writer claiming
    in between would put and commit, then lose its blob; the claim row's lock makes it wait."""
    paused = _DeletePausedStore(hub.store)
    with hub.sessions() as failing, hub.sessions() as arriving:
        claim(failing, KEY)
        _put(hub.store)
        giving_up = threading.Thread(target=abandon, args=(failing, cast(BlobStore, paused), KEY))
        giving_up.start()
        assert paused.deleting.wait(30)
        claiming = threading.Thread(target=claim, args=(arriving, KEY))
        claiming.start()
        claiming.join(LOCK_WAIT_S)
        assert claiming.is_alive(), "the claim went through while the blob was being deleted"
        paused.resume.set()
        giving_up.join(30)
        claiming.join(30)
    assert not hub.store.exists(KEY)  # deleted before the new writer's put, which comes next
    assert _writers(hub) == 1


def test_fsck_repair_keeps_the_blob_of_an_upload_in_flight_until_its_claim_is_stale(
    hub: Hub,
) -> None:
    with hub.sessions() as session:
        claim(session, KEY)
    _put(hub.store)
    with hub.sessions() as session:
        report = fsck(session, hub.store, repair=True)
    assert (report.orphan_blobs, report.in_flight_blobs) == ([], [KEY])
    assert report.clean and hub.store.exists(KEY)

    with hub.sessions() as session:  # the writer was killed an hour ago
        session.execute(
            update(BlobClaim).values(claimed_at=utc_now() - CLAIM_TTL - timedelta(minutes=1))
        )
        session.commit()
        report = fsck(session, hub.store, repair=True)
    assert (report.orphan_blobs, report.deleted_orphans) == ([KEY], 1)
    assert not hub.store.exists(KEY)
    assert _writers(hub) is None


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_a_conflicting_upload_leaves_no_claim_behind(hub: Hub) -> None:
    token = hub.token("alice")
    hub.upload("alice/one", lora_adapter(seed=1), token=token)
    stale = hub.upload(
        "alice/one",
        lora_adapter(seed=2),
        token=token,
        metadata={"task_description": "x", "parent_revision": 0},
    )
    assert stale.status_code == 409
    with hub.sessions() as session:
        assert session.scalars(select(BlobClaim)).all() == []
