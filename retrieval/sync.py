"""IndexSync: keeps an ExpertIndex in step with a source of truth it does not own.

The source (the registry's SQL database) keeps a version counter that grows on every upload or
delete. Each API process holds its own index and, before serving a search, compares the counter
with the version its index reflects; when they differ it pulls the changes since its version. So a
change made through one process is visible to searches on every process as soon as they next check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from retrieval.index import ExpertIndex, ExpertRecord


@dataclass(frozen=True)
class ChangeSet:
    """The changes after some version, up to and including `version`.

    `upserts` holds the current rows of experts created or changed since then, `deletes` the ids
    of experts deleted since then. Applying a change set twice is harmless.
    """

    version: int
    upserts: Sequence[ExpertRecord] = ()
    deletes: Sequence[int] = ()


# load_changes(since) returns the changes after `since`, or None when the source can no longer
# tell (for example its change log was pruned), which makes the index reload everything.
# Both callables must read the version counter BEFORE the rows: a change landing in between is
# then applied early and again later (harmless), never missed.
LoadChanges = Callable[[int], ChangeSet | None]
LoadAll = Callable[[], tuple[int, Iterable[ExpertRecord]]]


class IndexSync:
    """Brings an index up to a given source version, by deltas when it can, by a reload otherwise.

    Thread-safe: concurrent refreshes apply each change once; searches on the index go on
    meanwhile.
    """

    def __init__(
        self,
        index: ExpertIndex,
        load_changes: LoadChanges,
        load_all: LoadAll,
    ) -> None:
        self._index = index
        self._load_changes = load_changes
        self._load_all = load_all
        self._version: int | None = None
        self._lock = threading.Lock()

    @property
    def index(self) -> ExpertIndex:
        return self._index

    @property
    def version(self) -> int | None:
        """The source version the index reflects; None before the first load."""
        return self._version

    def refresh_if_stale(self, current_version: int) -> bool:
        """Make the index reflect at least `current_version`; True when anything was applied.

        Cheap when already current (no lock, no call to the source). A counter that went backwards
        (the database was restored or replaced) triggers a full reload.
        """
        if self._version is not None and current_version == self._version:
            return False
        with self._lock:
            if self._version is None or current_version < self._version:
                self._reload()
                return True
            if current_version == self._version:
                return False
            changes = self._load_changes(self._version)
            if changes is None:
                self._reload()
            else:
                self._index.update(upserts=changes.upserts, deletes=changes.deletes)
                self._version = changes.version
            return True

    def reload(self) -> None:
        """Rebuild the index from every row of the source (at start, or after a model change)."""
        with self._lock:
            self._reload()

    def _reload(self) -> None:
        version, records = self._load_all()
        self._index.rebuild(records)
        self._version = version
