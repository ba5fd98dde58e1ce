"""The API process killed with SIGKILL in the middle of uploads loses no acknowledged upload.

A real `compeft-hub serve` process takes uploads from four clients; once a few were acknowledged
it is SIGKILLed with more in flight (receiving, compressing, putting the blob or committing).
"Put, then commit" means a kill may orphan a blob, never leave a row without its blob. After a
restart, `compeft-hub fsck --repair` removes the orphans, a second fsck finds nothing, every
acknowledged upload downloads and decodes, and every expert takes its next revision.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bench.adapter_files import lora_adapter
from bench.api_process import (
    AcknowledgedUpload,
    ApiProcess,
    damaged_uploads,
    settings_environment,
    upload_form,
    upload_path,
)
from registry.cli.main import app as cli_app
from registry.services.fsck import fsck
from storage import LocalBlobStore
from tests.fixtures.faults import FAULT_ROUNDS
from tests.fixtures.registry import Hub, auth

CLIENTS = 4
ACKNOWLEDGED_BEFORE_KILL = 4  # per round
WAIT_S = 300  # generous: the box is shared; normally a few seconds


class Uploaders:
    """Clients each uploading new adapters to their own expert until the server goes away."""

    def __init__(self, base_url: str, token: str, seeds: Iterator[int]) -> None:
        self.base_url = base_url
        self.token = token
        self.seeds = seeds
        self.acknowledged: list[AcknowledgedUpload] = []
        self.cut: list[str] = []  # uploads whose answer never came: unknown outcome

    def run(self, expert: str) -> None:
        with httpx.Client(base_url=self.base_url, timeout=120) as client:
            while True:
                try:
                    response = client.post(
                        upload_path(expert),
                        **upload_form(lora_adapter(seed=next(self.seeds))),
                        headers=auth(self.token),
                    )
                except httpx.TransportError as exc:
                    self.cut.append(f"{expert}: {exc!r}")
                    return
                assert response.status_code == 201, response.text
                self.acknowledged.append(AcknowledgedUpload.from_answer(response.json()))


@pytest.fixture
def fsck_cli(hub: Hub) -> CliRunner:
    return CliRunner(env=settings_environment(hub.settings))


def test_sigkill_mid_uploads_loses_no_acknowledged_upload(
    hub: Hub, tmp_path: Path, fsck_cli: CliRunner
) -> None:
    token = hub.token("alice")
    environment = settings_environment(hub.settings)
    seeds = itertools.count()
    acknowledged: list[AcknowledgedUpload] = []
    experts = [f"alice/killed-{n}" for n in range(CLIENTS)]
    for round_number in range(FAULT_ROUNDS):
        server = ApiProcess(environment, tmp_path / f"api-{round_number}.log")
        server.start()
        uploaders = Uploaders(server.url, token, seeds)
        threads = [threading.Thread(target=uploaders.run, args=(e,)) for e in experts]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + WAIT_S
        while len(uploaders.acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            assert time.monotonic() < deadline, f"no uploads acknowledged:\n{server.log_tail()}"
            time.sleep(0.05)
        server.kill()
        for thread in threads:
            thread.join(WAIT_S)
        assert len(uploaders.cut) == CLIENTS  # each client had an upload in flight or starting
        acknowledged += uploaders.acknowledged

        with hub.sessions() as session:
            assert fsck(session, hub.store).dangling == []
        repair = fsck_cli.invoke(cli_app, ["fsck", "--repair"])
        assert repair.exit_code == 0, repair.output
        check = fsck_cli.invoke(cli_app, ["fsck"])
        assert check.exit_code == 0, check.output

    restarted = ApiProcess(environment, tmp_path / "api-restarted.log")
    restarted.start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=120) as client:
            assert damaged_uploads(client, acknowledged) == []
            for expert in experts:
                after = client.post(
                    upload_path(expert), **upload_form(lora_adapter(seed=-1)), headers=auth(token)
                )
                assert after.status_code == 201, after.text
    finally:
        restarted.stop()


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_fsck_repair_removes_the_partial_write_of_a_killed_put(
    hub: Hub, fsck_cli: CliRunner
) -> None:
    """What a SIGKILL during LocalBlobStore.put leaves: a temporary file next to where the blob
    would have been renamed to. Reads never see it; fsck lists it and --repair removes it."""
    store = hub.store
    assert isinstance(store, LocalBlobStore)
    partial = store.root / "ab" / "cd" / ".tmp-killed"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a blob")
    found = fsck_cli.invoke(cli_app, ["fsck"])
    assert found.exit_code == 1
    assert "partial writes of interrupted uploads: 1\n  ab/cd/.tmp-killed" in found.stdout
    with pytest.raises(ValueError, match="not a leftover"):
        store.remove_abandoned_write("../outside")
    assert fsck_cli.invoke(cli_app, ["fsck", "--repair"]).exit_code == 0
    assert not partial.exists()
    assert fsck_cli.invoke(cli_app, ["fsck"]).exit_code == 0
