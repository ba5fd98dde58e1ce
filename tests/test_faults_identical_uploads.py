"""Two API processes, many identical uploads at once, one of each pair failing: nothing is lost.

Content addressing makes uploads of the same bytes share one blob, across experts and users. The
hostile pass found that an upload failing after its put deleted that shared blob while another
upload of the same bytes was between its put and its commit: the other got its 201 and then
served 404. Here, for each N, five uploads run at once, spread over two `compeft-hub serve`
processes that share one database and one blob store:

- `alice/stale-N` with content S_N and a `parent_revision` that is wrong: it fails with 409 (as
  in the report; the early parent check now refuses it before its put), while `bob/stale-N`
  uploads the same S_N and must succeed;
- `alice/race-N` gets content C_N and content R_N, both with `parent_revision: 0`: exactly one
  wins, the other fails with 409, often after its put (both passed the early parent check),
  while `bob/race-N` uploads the same C_N and must succeed.

Every acknowledged revision must then download, hash to its sha256 and decode, and fsck must find
no revision without its blob. On SQLite and PostgreSQL, local folder and S3.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.adapter_files import DEFAULT_METADATA, AdapterFiles, lora_adapter
from bench.api_process import (
    AcknowledgedUpload,
    ApiProcess,
    damaged_uploads,
    settings_environment,
    upload_form,
    upload_path,
)
from registry.services.fsck import fsck
from tests.fixtures.registry import Hub, auth

ROUNDS = int(os.environ.get("COMPEFT_HUB_RACE_ROUNDS", "30"))  # two identical pairs per round
CONCURRENT_UPLOADS = 10
RACING = {**DEFAULT_METADATA, "parent_revision": 0}
STALE = {**DEFAULT_METADATA, "parent_revision": 7}


@pytest.fixture
def two_servers(hub: Hub, tmp_path: Path) -> Iterator[list[ApiProcess]]:
    """Two `compeft-hub serve` processes on the hub's database and blob store."""
    environment = {  # one token and one address send everything: no rate limits
        **settings_environment(hub.settings),
        "COMPEFT_HUB_WRITES_PER_MINUTE": "0",
        "COMPEFT_HUB_REQUESTS_PER_MINUTE": "0",
    }
    servers = [ApiProcess(environment, tmp_path / f"api-{n}.log") for n in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _post(
    url: str, expert: str, adapter: AdapterFiles, token: str, metadata: dict[str, Any]
) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=300) as client:
        return client.post(
            upload_path(expert), **upload_form(adapter, metadata), headers=auth(token)
        )


def test_failed_identical_uploads_never_delete_an_acknowledged_blob(
    hub: Hub, two_servers: list[ApiProcess]
) -> None:
    alice, bob = hub.token("alice"), hub.token("bob")
    first, second = (server.url for server in two_servers)
    jobs = []
    for n in range(ROUNDS):
        stale, shared, rival = (lora_adapter(seed=3 * n + k) for k in range(3))
        jobs += [
            (first, f"alice/stale-{n}", stale, alice, STALE),
            (second, f"bob/stale-{n}", stale, bob, DEFAULT_METADATA),
            (first, f"alice/race-{n}", shared, alice, RACING),
            (second, f"bob/race-{n}", shared, bob, DEFAULT_METADATA),
            (second, f"alice/race-{n}", rival, alice, RACING),
        ]
    with ThreadPoolExecutor(CONCURRENT_UPLOADS) as pool:
        responses = list(pool.map(lambda job: _post(*job), jobs))

    statuses = [response.status_code for response in responses]
    unexpected = [r.text for r in responses if r.status_code not in (201, 409)]
    assert unexpected == [], unexpected
    assert statuses.count(409) == 2 * ROUNDS  # the stale one and one racer; every bob acknowledged
    acknowledged = [
        AcknowledgedUpload.from_answer(r.json()) for r in responses if r.status_code == 201
    ]
    with httpx.Client(base_url=first, timeout=120) as client:
        assert damaged_uploads(client, acknowledged) == []
    with hub.sessions() as session:
        assert fsck(session, hub.store).dangling == []
