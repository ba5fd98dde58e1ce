"""A blob corrupted in storage is detected by its sha256, by the client and by `fsck --verify`.

Blobs are content-addressed, so damage in the store (a flipped byte on disk or in the S3 object)
shows as bytes that no longer hash to their key. The server streams what the store holds; the
client SDK verifies the sha256 it was promised and says the hub's copy may be corrupted;
`compeft-hub fsck --verify` finds the blob, `--repair` deletes it and flags its revision, and
uploading the same adapter again brings the blob back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from bench.adapter_files import lora_adapter
from bench.api_process import settings_environment
from registry.api.app import create_app
from registry.cli.main import app as cli_app
from registry.client import ChecksumMismatchError, HubClient
from storage import LocalBlobStore, S3BlobStore
from tests.fixtures.live_hub import FAST_RETRIES
from tests.fixtures.registry import Hub, served_over_http

ADAPTER = lora_adapter(seed=7)


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


@pytest.fixture
def corrupt(hub: Hub, request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Damage the stored bytes of a blob behind the hub's back, in whichever store it uses."""
    store = hub.store

    def corrupt_blob(key: str) -> None:
        if isinstance(store, LocalBlobStore):
            (path,) = store.root.glob(f"??/??/{key}")
            path.write_bytes(flip_last_byte(path.read_bytes()))
            return
        assert isinstance(store, S3BlobStore)
        client = request.getfixturevalue("s3_server").client()
        name = f"{store.prefix}/{key}"
        body = client.get_object(Bucket=store.bucket, Key=name)["Body"].read()
        client.put_object(Bucket=store.bucket, Key=name, Body=flip_last_byte(body))

    return corrupt_blob


@pytest.fixture
def base_url(hub: Hub) -> Iterator[str]:
    with served_over_http(create_app(hub.settings)) as url:
        yield url


@pytest.fixture
def fsck(hub: Hub) -> Callable[..., Result]:
    runner = CliRunner(env=settings_environment(hub.settings))
    return lambda *args: runner.invoke(cli_app, ["fsck", *args])


def test_corrupted_blob_is_detected_reported_repaired_and_healed_by_a_new_upload(
    hub: Hub,
    base_url: str,
    tmp_path: Path,
    corrupt: Callable[[str], None],
    fsck: Callable[..., Result],
) -> None:
    token = hub.token("alice")
    created = hub.upload("alice/fragile", ADAPTER, token=token)
    assert created.status_code == 201, created.text
    key = created.json()["blob_sha256"]
    corrupt(key)

    with (
        HubClient(base_url, token, tmp_path / "cache", retry=FAST_RETRIES, progress=False) as sdk,
        pytest.raises(ChecksumMismatchError, match=f"{key}.*corrupted.*fsck"),
    ):
        sdk.pull("alice/fragile")
    raw = httpx.get(f"{base_url}/api/v1/experts/alice/fragile/revisions/1/blob")
    assert raw.headers["etag"] == f'"{key}"' != f'"{hashlib.sha256(raw.content).hexdigest()}"'

    assert fsck().exit_code == 0  # without --verify, only presence is checked
    found = fsck("--verify")
    assert found.exit_code == 1
    assert f"blobs whose bytes do not hash to their key: 1\n  {key}" in found.stdout
    repaired = fsck("--verify", "--repair")
    assert "flagged 1 revision(s) as missing" in repaired.stdout
    assert "deleted 1 corrupt blob(s)" in repaired.stdout
    gone = httpx.get(f"{base_url}/api/v1/experts/alice/fragile/revisions/1/blob")
    assert gone.status_code == 404
    assert "upload the adapter again" in gone.json()["detail"]

    again = hub.upload("alice/fragile", ADAPTER, token=token)
    assert again.json()["blob_sha256"] == key
    assert "unflagged 1" in fsck("--verify", "--repair").stdout
    with HubClient(base_url, token, tmp_path / "cache", retry=FAST_RETRIES, progress=False) as sdk:
        assert sdk.load("alice/fragile@1").keys() == sdk.load("alice/fragile@2").keys()
