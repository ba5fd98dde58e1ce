"""IndexSync against an in-memory source of truth with a version counter and a change log."""

import threading

import numpy as np
import pytest

from retrieval.index import ExpertIndex, ExpertRecord
from retrieval.sync import ChangeSet, IndexSync

DIM = 8
BASE = "base-a"


class InMemorySource:
    """What the registry's SQL tables provide: rows, a version counter, a prunable change log."""

    def __init__(self) -> None:
        self.version = 0
        self.rows: dict[int, ExpertRecord] = {}
        self.log: list[tuple[int, int]] = []  # (version, expert id) of every change
        self.pruned_before = 0
        self.calls = {"changes": 0, "all": 0}

    def upsert(self, expert_id: int, seed: int | None = None) -> None:
        vector = np.random.default_rng(expert_id if seed is None else seed).standard_normal(DIM)
        self.rows[expert_id] = ExpertRecord(expert_id, vector, BASE, "LORA")
        self._changed(expert_id)

    def delete(self, expert_id: int) -> None:
        del self.rows[expert_id]
        self._changed(expert_id)

    def load_changes(self, since: int) -> ChangeSet | None:
        self.calls["changes"] += 1
        if since < self.pruned_before:
            return None
        changed = {expert_id for version, expert_id in self.log if version > since}
        return ChangeSet(
            version=self.version,
            upserts=[self.rows[i] for i in changed if i in self.rows],
            deletes=[i for i in changed if i not in self.rows],
        )

    def load_all(self) -> tuple[int, list[ExpertRecord]]:
        self.calls["all"] += 1
        return self.version, list(self.rows.values())

    def sync(self) -> IndexSync:
        return IndexSync(ExpertIndex(DIM), self.load_changes, self.load_all)

    def _changed(self, expert_id: int) -> None:
        self.version += 1
        self.log.append((self.version, expert_id))


def indexed_ids(sync: IndexSync) -> set[int]:
    if not sync.index.base_models():
        return set()
    return {hit.expert_id for hit in sync.index.search(np.ones(DIM), BASE, k=100)}


@pytest.fixture
def source() -> InMemorySource:
    source = InMemorySource()
    for expert_id in range(5):
        source.upsert(expert_id)
    return source


def test_first_refresh_loads_everything(source):
    sync = source.sync()
    assert sync.refresh_if_stale(source.version) is True
    assert indexed_ids(sync) == {0, 1, 2, 3, 4}
    assert sync.version == source.version and source.calls == {"changes": 0, "all": 1}


def test_later_refreshes_apply_only_the_deltas(source):
    sync = source.sync()
    sync.refresh_if_stale(source.version)
    source.upsert(10)
    source.delete(2)
    source.upsert(3, seed=99)
    assert sync.refresh_if_stale(source.version) is True
    assert indexed_ids(sync) == {0, 1, 3, 4, 10}
    moved = sync.index.search(source.rows[3].vector, BASE, k=1)[0]
    assert moved.expert_id == 3 and moved.score == pytest.approx(1.0)
    assert source.calls == {"changes": 1, "all": 1}


def test_refresh_is_free_when_the_index_is_current(source):
    sync = source.sync()
    sync.refresh_if_stale(source.version)
    assert sync.refresh_if_stale(source.version) is False
    assert source.calls == {"changes": 0, "all": 1}


def test_a_pruned_change_log_falls_back_to_a_full_reload(source):
    sync = source.sync()
    sync.refresh_if_stale(source.version)
    source.delete(0)
    source.pruned_before = source.version
    assert sync.refresh_if_stale(source.version) is True
    assert indexed_ids(sync) == {1, 2, 3, 4}
    assert source.calls == {"changes": 1, "all": 2}


def test_a_counter_that_went_backwards_means_a_restored_database_and_reloads(source):
    sync = source.sync()
    sync.refresh_if_stale(source.version)
    source.rows, source.log, source.version = {}, [], 0  # restored from an older backup
    source.upsert(42)
    assert sync.refresh_if_stale(source.version) is True
    assert indexed_ids(sync) == {42}


def test_two_processes_on_one_source_converge(source):
    first, second = source.sync(), source.sync()
    first.refresh_if_stale(source.version)
    second.refresh_if_stale(source.version)
    source.upsert(7)  # an upload through the first process
    source.delete(1)  # a delete through the second
    for process in (first, second):
        process.refresh_if_stale(source.version)
    assert indexed_ids(first) == indexed_ids(second) == {0, 2, 3, 4, 7}


def test_concurrent_refreshes_apply_each_change_once(source):
    sync = source.sync()
    sync.refresh_if_stale(source.version)
    source.upsert(8)
    barrier = threading.Barrier(6)

    def refresh() -> None:
        barrier.wait()
        sync.refresh_if_stale(source.version)

    threads = [threading.Thread(target=refresh) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.calls == {"changes": 1, "all": 1}
    assert 8 in indexed_ids(sync)
