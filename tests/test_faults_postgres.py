"""PostgreSQL restarted under traffic: 503 while it is down, recovery without restarting the API.

The database is a throw-away cluster (tests/fixtures/postgres_cluster.py), stopped with
`pg_ctl -m immediate` (a crash: WAL recovery on start) while four clients keep reading and
uploading through a live uvicorn server. Every answer must be a success or a clean 503; once the
cluster is back, every kind of request succeeds again on the same server process, and every upload
that was acknowledged is intact.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.adapter_files import lora_adapter
from bench.api_process import AcknowledgedUpload, damaged_uploads, upload_form, upload_path
from registry.api.app import create_app
from registry.services.fsck import fsck
from registry.settings import Settings
from tests.fixtures.faults import FAULT_ROUNDS
from tests.fixtures.postgres_cluster import PostgresCluster, postgres_cluster  # noqa: F401
from tests.fixtures.registry import Hub, auth, open_hub, served_over_http

CLIENTS = 4
DATABASE_DOWN = "database temporarily unavailable; retry later"
PHASE_WAIT_S = 120  # generous: the box is shared; a phase normally takes a second or two
SEEN_PER_PHASE = 8


@dataclass
class Traffic:
    """Clients that loop over every kind of request and record (phase, kind, status, detail)."""

    base_url: str
    token: str
    phase: str = "up"  # then down-0, back-0, down-1...
    answers: list[tuple[str, str, int, str]] = field(default_factory=list)
    acknowledged: list[AcknowledgedUpload] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _seeds: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self, client: httpx.Client) -> dict[str, Callable[[], httpx.Response]]:
        revision = "/api/v1/experts/alice/seed/revisions/1"
        return {
            "health": lambda: client.get("/healthz"),
            "list": lambda: client.get("/api/v1/experts"),
            "detail": lambda: client.get(revision),
            "blob": lambda: client.get(f"{revision}/blob"),
            "upload": lambda: self._upload(client, next(self._seeds)),
        }

    def _upload(self, client: httpx.Client, seed: int) -> httpx.Response:
        return client.post(
            upload_path(f"alice/load-{seed}"),
            **upload_form(lora_adapter(seed=seed)),
            headers=auth(self.token),
        )

    def client_loop(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            for kind, send in itertools.cycle(self.requests(client).items()):
                if self._stop.is_set():
                    return
                phase = self.phase
                try:
                    response = send()
                except httpx.HTTPError as exc:
                    self.failures.append(f"{phase} {kind}: {exc!r}")
                    continue
                detail = response.json().get("detail", "") if response.status_code >= 400 else ""
                with self._lock:
                    self.answers.append((phase, kind, response.status_code, detail))
                    if kind == "upload" and response.status_code == 201:
                        self.acknowledged.append(AcknowledgedUpload.from_answer(response.json()))

    def seen(self, phase: str, status: int | None = None) -> Counter[str]:
        """How many answers of each kind arrived in `phase` (with `status`, if given)."""
        return Counter(kind for p, kind, s, _ in self.answers if p == phase and status in (None, s))

    def wait_for(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + PHASE_WAIT_S
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"still waiting for {what}; answers: {self.answers[-20:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def cluster_hub(postgres_cluster: PostgresCluster, tmp_path: Path) -> Iterator[Hub]:  # noqa: F811
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_cluster.url,
        blob_store_url=(tmp_path / "blobs").as_uri(),
        auto_upgrade=False,
    )
    with open_hub(settings) as hub:
        yield hub


def restart_under_traffic(cluster: PostgresCluster, traffic: Traffic, round_number: int) -> None:
    """Crash the cluster, see 503s, start it, see every kind of request succeed again."""
    down, back = f"down-{round_number}", f"back-{round_number}"
    traffic.phase = f"stopping-{round_number}"  # answers to requests in flight during the crash
    cluster.stop("immediate")
    traffic.phase = down
    traffic.wait_for(lambda: traffic.seen(down, 503).total() >= SEEN_PER_PHASE, "503s while down")
    cluster.start()
    traffic.phase = back
    traffic.wait_for(
        lambda: set(traffic.seen(back, 200) + traffic.seen(back, 201)) >= set(traffic.seen("up")),
        "every kind of request to succeed again",
    )


def test_postgres_restart_under_traffic_answers_503_then_recovers_by_itself(
    postgres_cluster: PostgresCluster,  # noqa: F811
    cluster_hub: Hub,
) -> None:
    token = cluster_hub.token("alice")
    assert cluster_hub.upload("alice/seed", lora_adapter(seed=1), token=token).status_code == 201
    with served_over_http(create_app(cluster_hub.settings)) as base_url:
        traffic = Traffic(base_url, token)
        clients = [threading.Thread(target=traffic.client_loop) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        try:
            traffic.wait_for(lambda: traffic.seen("up").total() >= SEEN_PER_PHASE, "traffic")
            for round_number in range(FAULT_ROUNDS):
                restart_under_traffic(postgres_cluster, traffic, round_number)
        finally:
            traffic.stop()
            for client in clients:
                client.join()

        assert traffic.failures == []
        statuses = Counter((status, detail) for _, _, status, detail in traffic.answers)
        assert {status for status, _ in statuses} <= {200, 201, 503}, statuses
        assert {detail for status, detail in statuses if status == 503} == {DATABASE_DOWN}
        with httpx.Client(base_url=base_url, timeout=60) as client:
            assert damaged_uploads(client, traffic.acknowledged) == []

    with cluster_hub.sessions() as session:
        report = fsck(session, cluster_hub.store, repair=True)
        assert report.dangling == []  # put, then commit: an outage can orphan a blob, not a row
        assert fsck(session, cluster_hub.store).clean
