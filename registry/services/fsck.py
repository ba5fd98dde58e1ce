"""Compare the SQL rows with the blob store: rows whose blob is missing, blobs no row references.

"Put, then commit" means a crash can leave a blob without a row (an orphan), never the reverse;
a row without a blob means the store lost data. A crash in the middle of a put can also leave a
partial write behind (a temporary file), invisible to reads. With `verify`, every blob is read and
hashed: one whose bytes no longer hash to its key (content addressing) is corrupt, and counts as
missing. Repair deletes orphans, partial writes and corrupt blobs and flags dangling revisions
`blob_missing` (downloads then explain the loss), and clears the flag when a blob came back (the
same content uploaded again). An upload in flight has put its blob but not committed its row yet:
its claim (`registry.services.blob_claims`) keeps that blob out of the orphans, and repair deletes each
orphan under the same lock as uploads, so it is safe while uploads run. Only the removal of
partial writes assumes that no put is running (a running put would fail with 503, losing nothing).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry.db.models import Expert, Revision, User
from registry.services.blob_claims import claimed_blobs, delete_if_unclaimed
from storage import BlobStore


@dataclass(frozen=True)
class DanglingRevision:
    """A revision row whose blob is not in the store."""

    expert: str
    revision: int
    blob_sha256: str


@dataclass
class FsckReport:
    """What fsck found and, with repair, what it changed."""

    dangling: list[DanglingRevision] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    in_flight_blobs: list[str] = field(default_factory=list)  # put, their commit still to come
    corrupt_blobs: list[str] = field(default_factory=list)
    abandoned_writes: list[str] = field(default_factory=list)
    deleted_orphans: int = 0
    deleted_corrupt: int = 0
    deleted_abandoned: int = 0
    marked_missing: int = 0
    marked_present: int = 0

    @property
    def clean(self) -> bool:
        return not (
            self.dangling or self.orphan_blobs or self.corrupt_blobs or self.abandoned_writes
        )


def fsck(
    session: Session, store: BlobStore, *, repair: bool = False, verify: bool = False
) -> FsckReport:
    """Find (and with `repair`, fix) disagreements between SQL and the blob store.

    `verify` reads every blob (the whole store) to find the corrupt ones.
    """
    rows = session.execute(
        select(Revision.id, Revision.revision, Revision.blob_sha256, Revision.blob_missing)
        .add_columns(User.name.label("owner"), Expert.name.label("name"))
        .join(Revision.expert)
        .join(Expert.owner)
        .order_by(Revision.id)
    ).all()
    claimed = claimed_blobs(session)
    stored = set(store.keys())
    corrupt = sorted(key for key in stored if not _intact(store, key)) if verify else []
    intact = stored - set(corrupt)
    unreferenced = intact - {row.blob_sha256 for row in rows}
    report = FsckReport(
        dangling=[
            DanglingRevision(f"{row.owner}/{row.name}", row.revision, row.blob_sha256)
            for row in rows
            if row.blob_sha256 not in intact
        ],
        orphan_blobs=sorted(unreferenced - claimed),
        in_flight_blobs=sorted(unreferenced & claimed),
        corrupt_blobs=corrupt,
        abandoned_writes=store.abandoned_writes(),
    )
    if not repair:
        return report
    report.deleted_orphans = sum(
        delete_if_unclaimed(session, store, key) for key in report.orphan_blobs
    )
    for key in report.corrupt_blobs:
        store.delete(key)
    for name in report.abandoned_writes:
        store.remove_abandoned_write(name)
    report.deleted_corrupt = len(report.corrupt_blobs)
    report.deleted_abandoned = len(report.abandoned_writes)
    lost = [row.id for row in rows if row.blob_sha256 not in intact and not row.blob_missing]
    back = [row.id for row in rows if row.blob_sha256 in intact and row.blob_missing]
    report.marked_missing = _set_blob_missing(session, lost, missing=True)
    report.marked_present = _set_blob_missing(session, back, missing=False)
    session.commit()
    return report


def _intact(store: BlobStore, key: str) -> bool:
    """True when the stored bytes still hash to their key."""
    digest = hashlib.sha256()
    for chunk in store.open(key):
        digest.update(chunk)
    return digest.hexdigest() == key


def _set_blob_missing(session: Session, revision_ids: list[int], *, missing: bool) -> int:
    if revision_ids:
        session.execute(
            update(Revision).where(Revision.id.in_(revision_ids)).values(blob_missing=missing)
        )
    return len(revision_ids)
