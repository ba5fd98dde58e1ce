"""What the fault tests and bench/load.py share: the hub as a real `compeft-hub serve` process,
uploads over HTTP, and the check that every acknowledged upload is intact.

Whatever happened to the servers, a revision the hub answered 201 for must still be there: its
blob must download, hash to the announced sha256 and decode as a ComPEFT blob.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from bench.adapter_files import DEFAULT_METADATA, AdapterFiles
from bench.hub_process import stop_process, wait_until_healthy
from bench.seaweedfs import free_ports
from compeft_core import BlobFormatError, CompressedExpert
from registry.settings import Settings

SERVER_START_TIMEOUT_S = 120  # imports torch and loads the search index; slow on a busy box


def upload_form(
    adapter: AdapterFiles, metadata: Mapping[str, Any] = DEFAULT_METADATA
) -> dict[str, Any]:
    """The `files` and `data` keyword arguments of an httpx upload (sync or async client)."""
    return {
        "files": {
            "adapter_config.json": ("adapter_config.json", adapter.config),
            "adapter_model.safetensors": ("adapter_model.safetensors", adapter.weights),
        },
        "data": {"metadata": json.dumps(metadata)},
    }


def upload_path(expert: str) -> str:
    return f"/api/v1/experts/{expert}/revisions"


@dataclass(frozen=True)
class AcknowledgedUpload:
    """A revision the hub answered 201 for: what it promised."""

    expert: str
    revision: int
    blob_sha256: str

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> AcknowledgedUpload:
        """From the JSON body of a 201 upload answer."""
        return cls(answer["id"], answer["revision"], answer["blob_sha256"])


def damaged_uploads(client: httpx.Client, uploads: Iterable[AcknowledgedUpload]) -> list[str]:
    """One line per acknowledged upload that is not intact (empty when all are).

    `client` has the hub's base URL. Deleted experts are the caller's to leave out.
    """
    problems = []
    for upload in uploads:
        path = f"/api/v1/experts/{upload.expert}/revisions/{upload.revision}"
        detail = client.get(path)
        if detail.status_code != 200 or detail.json()["blob_sha256"] != upload.blob_sha256:
            problems.append(f"{upload}: revision answers {detail.status_code} {detail.text[:200]}")
            continue
        blob = client.get(f"{path}/blob")
        if blob.status_code != 200:
            problems.append(f"{upload}: blob answers {blob.status_code} {blob.text[:200]}")
        elif hashlib.sha256(blob.content).hexdigest() != upload.blob_sha256:
            problems.append(f"{upload}: the downloaded blob has another sha256")
        else:
            try:
                CompressedExpert.from_bytes(blob.content).decompress()
            except BlobFormatError as exc:
                problems.append(f"{upload}: the blob does not decode: {exc}")
    return problems


def settings_environment(settings: Settings) -> dict[str, str]:
    """The COMPEFT_HUB_* variables that make a `compeft-hub` process use `settings`' stores."""
    return {
        "COMPEFT_HUB_DATA_DIR": str(settings.data_dir),
        "COMPEFT_HUB_DATABASE_URL": settings.sqlalchemy_url,
        "COMPEFT_HUB_BLOB_STORE_URL": settings.storage_url,
        "COMPEFT_HUB_AUTO_UPGRADE": "false",
    }


def compeft_hub_command() -> list[str]:
    """The installed `compeft-hub` script of this environment (the venv's bin folder)."""
    script = shutil.which("compeft-hub", path=str(Path(sys.executable).parent))
    return (
        [script] if script else [sys.executable, "-c", "from registry.cli.main import app; app()"]
    )


@dataclass
class ApiProcess:
    """`compeft-hub serve` in its own process group on a free loopback port.

    The environment adds `environment` (COMPEFT_HUB_*, AWS_*) to this process's own. The server's
    output goes to `log_path`, quoted when it fails to start.
    """

    environment: Mapping[str, str]
    log_path: Path
    port: int = field(default_factory=lambda: free_ports(1)[0])
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> None:
        """Start the server and return once /healthz answers 200."""
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [*compeft_hub_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **self.environment},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_healthy(self._process, self.url, SERVER_START_TIMEOUT_S)
        except RuntimeError as exc:
            self.kill()
            raise RuntimeError(
                f"compeft-hub serve did not start ({exc}); log:\n{self.log_tail()}"
            ) from exc

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, requests in flight are cut wherever they are."""
        self._end(signal.SIGKILL)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (uvicorn finishes requests in flight), SIGKILL after `grace` seconds."""
        self._end(signal.SIGTERM, grace)

    def _end(self, sig: signal.Signals, grace: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, sig, grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
