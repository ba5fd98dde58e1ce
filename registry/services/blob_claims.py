"""Who may delete a content-addressed blob: the claim protocol between writers and deleters.

Uploads of identical bytes share one blob, across experts, users and API processes, so an upload
that fails cannot just delete "its" blob: another upload may have put the same bytes and be about
to commit a revision that points at them. Every writer and every deleter of a blob therefore
goes through the blob's row in `blob_claims`, which a transaction locks by writing to it (a row
lock on PostgreSQL, the database write lock on SQLite):

- a writer `claim`s the blob (one more writer, committed) before its put;
- its revision commit `release`s the claim in the same transaction as the revision row;
- a writer that gives up calls `abandon`: under the lock it releases its claim and deletes the
  blob only when no other writer holds a claim and no committed revision references it;
- `fsck --repair` deletes an orphan the same way (`delete_if_unclaimed`), so it never removes
  the blob of an upload in flight.

Whoever decides "unreferenced and unclaimed" holds the lock until the blob is gone, so no writer
can claim, put and commit in between. A claim left by a killed process counts until it is
`CLAIM_TTL` old (longer than any upload takes between its claim and its commit); then fsck may
collect the blob.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from registry.db.engine import upsert
from registry.db.models import BlobClaim, Revision, utc_now
from storage import BlobStore

logger = logging.getLogger(__name__)

CLAIM_TTL = timedelta(hours=1)


def _add_writers(
    session: Session, sha256: str, delta: int, *, now: datetime | None
) -> tuple[int, datetime]:
    """Add `delta` writers to the claim row (created if absent), which stays locked until the
    transaction ends; `now` also records a new claim time. Returns (writers, claimed_at)."""
    changes: dict[str, object] = {"writers": BlobClaim.writers + delta}
    if now is not None:
        changes["claimed_at"] = now
    writers, claimed_at = session.execute(
        upsert(session, BlobClaim)
        .values(sha256=sha256, writers=max(delta, 0), claimed_at=now or utc_now())
        .on_conflict_do_update(index_elements=[BlobClaim.sha256], set_=changes)
        .returning(BlobClaim.writers, BlobClaim.claimed_at)
    ).one()
    return writers, claimed_at


def claim(session: Session, sha256: str) -> None:
    """Register one more writer of `sha256` and commit, before any byte of it is put."""
    _add_writers(session, sha256, 1, now=utc_now())
    session.commit()


def release(session: Session, sha256: str) -> None:
    """End a claim inside the transaction that commits the revision referencing the blob."""
    writers, _ = _add_writers(session, sha256, -1, now=None)
    if writers <= 0:
        session.execute(delete(BlobClaim).where(BlobClaim.sha256 == sha256))


def abandon(session: Session, store: BlobStore, sha256: str) -> None:
    """End the claim of a writer whose commit failed; delete the blob if nothing needs it.

    Never raises: when the database or the store fails here, the blob stays (an orphan that
    `fsck --repair` removes once its claim is stale), which loses nothing.
    """
    try:
        session.rollback()
        writers, _ = _add_writers(session, sha256, -1, now=None)
        if writers <= 0:
            if not _referenced(session, sha256):
                store.delete(sha256)
            session.execute(delete(BlobClaim).where(BlobClaim.sha256 == sha256))
        session.commit()
    except Exception:
        session.rollback()
        logger.exception("could not release the claim on blob %s after a failed commit", sha256)


def delete_if_unclaimed(session: Session, store: BlobStore, sha256: str) -> bool:
    """Delete an orphan blob unless a live claim or a revision needs it; True if deleted.

    For fsck: safe while uploads run. A claim older than CLAIM_TTL is a killed writer's and no
    longer protects the blob.
    """
    writers, claimed_at = _add_writers(session, sha256, 0, now=None)
    live = writers > 0 and claimed_at > _stale_before()
    if live or _referenced(session, sha256):
        session.commit()
        return False
    store.delete(sha256)
    session.execute(delete(BlobClaim).where(BlobClaim.sha256 == sha256))
    session.commit()
    return True


def claimed_blobs(session: Session) -> set[str]:
    """The blobs a live claim protects: put (or about to be) by an upload still in flight."""
    return set(
        session.scalars(
            select(BlobClaim.sha256).where(
                BlobClaim.writers > 0, BlobClaim.claimed_at > _stale_before()
            )
        )
    )


def _stale_before() -> datetime:
    """Claims made before this are a killed writer's: they no longer protect their blob."""
    return utc_now() - CLAIM_TTL


def _referenced(session: Session, sha256: str) -> bool:
    """True when a committed revision (of any expert, deleted or not) points at the blob."""
    return bool(session.scalar(select(exists().where(Revision.blob_sha256 == sha256))))
