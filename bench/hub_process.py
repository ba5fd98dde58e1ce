"""A compeft-hub server in its own process on a loopback port, for the transfer benchmarks.

The server is the registry app as `compeft-hub serve` builds it (`create_app` from the
COMPEFT_HUB_* settings, served by uvicorn), run in a child process so that its CPU work does not
share the client's interpreter lock: timings then mean what they would for a remote client. Two things are added around
the app, in this process only, never to the production routes:

- a counter of HTTP body bytes in and out, read with `GET /bench/wire`: the bytes on the wire are
  measured where they cross, not computed from file sizes;
- with `--static DIR`, the files of DIR under `/bench/files/`, so a baseline can fetch plain
  files from the very same server.

    python -m bench.hub_process --fd N [--static DIR]   # run by `running_hub`, not by hand
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.app import create_app
from registry.db.engine import create_db_engine, create_session_factory
from registry.db.schema import prepare_schema
from registry.services.accounts import create_token, create_user
from registry.serving import uvicorn_config
from registry.settings import Settings

WIRE_PATH = "/bench/wire"
FILES_PATH = "/bench/files"
START_TIMEOUT_S = 120  # the app loads the task embedder before it answers
STOP_GRACE_S = 10


@dataclass
class WireCounter:
    """ASGI middleware: totals of request and response body bytes, answered at WIRE_PATH.

    Headers are not counted (a few hundred bytes per request); its own answers are not either.
    """

    app: ASGIApp
    received: int = 0
    sent: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == WIRE_PATH:
            await self._answer_totals(send)
            return

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.sent += len(message.get("body", b""))
            await send(message)

        await self.app(scope, counted_receive, counted_send)

    async def _answer_totals(self, send: Send) -> None:
        body = json.dumps({"received": self.received, "sent": self.sent}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class WireBytes:
    """HTTP body bytes the server received (client to server) and sent (server to client)."""

    received: int
    sent: int

    def __sub__(self, earlier: WireBytes) -> WireBytes:
        return WireBytes(self.received - earlier.received, self.sent - earlier.sent)


@dataclass(frozen=True)
class RunningHub:
    """A served hub: its URL and a read-write token of `user`."""

    url: str
    user: str
    token: str

    def wire(self) -> WireBytes:
        """The server's byte totals now; subtract two readings to get one step's traffic."""
        return WireBytes(**httpx.get(f"{self.url}{WIRE_PATH}").json())


def create_bench_token(settings: Settings, user: str) -> str:
    """Create the schema, `user` and a read-write token directly in the hub's database.

    Done before the server starts, as an operator would with `compeft-hub user create`.
    """
    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        prepare_schema(engine, auto_upgrade=True)
        with create_session_factory(engine)() as session:
            create_user(session, name=user)
            return create_token(session, user_name=user)
    finally:
        engine.dispose()


@contextmanager
def running_hub(
    data_dir: Path,
    blob_store_url: str,
    *,
    extra_env: Mapping[str, str] | None = None,
    static_dir: Path | None = None,
    user: str = "bench",
) -> Iterator[RunningHub]:
    """Start a hub on a SQLite file in `data_dir` and blobs at `blob_store_url`, in a child
    process; `extra_env` reaches only the child (AWS credentials of an S3 store).

    The database is named explicitly, so a DATABASE_URL in the environment (CI's PostgreSQL)
    is not written to. The listening socket is bound here and handed down, so no other process
    can take the port between choosing and binding it. The child is stopped by its PID; if the
    block fails, the end of the server's log is printed (a 500 says no more than that).
    """
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'hub.sqlite3'}",
        blob_store_url=blob_store_url,
    )
    token = create_bench_token(settings, user)
    env = {
        **os.environ,
        **(extra_env or {}),
        "COMPEFT_HUB_DATA_DIR": str(data_dir),
        "COMPEFT_HUB_DATABASE_URL": settings.sqlalchemy_url,
        "COMPEFT_HUB_BLOB_STORE_URL": blob_store_url,
    }
    log_path = data_dir / "server.log"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    command = [sys.executable, "-m", "bench.hub_process", "--fd", str(sock.fileno())]
    if static_dir is not None:
        command += ["--static", str(static_dir)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            pass_fds=[sock.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()
    try:
        wait_until_healthy(process, url, START_TIMEOUT_S)
        yield RunningHub(url, user, token)
    except BaseException:
        print(f"the hub's log ({log_path}), last lines:\n{_tail(log_path)}", file=sys.stderr)
        raise
    finally:
        stop_process(process)


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    """Return once `url`/healthz answers 200; RuntimeError if the process exits or time runs out.

    The app loads its search index before it answers, which takes seconds on a busy machine.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the hub exited during startup with status {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the hub at {url} did not answer within {timeout_s} s")
        time.sleep(0.2)


def stop_process(
    process: subprocess.Popen[bytes],
    sig: signal.Signals = signal.SIGTERM,
    grace_s: float = STOP_GRACE_S,
) -> None:
    """Send `sig` (SIGTERM: uvicorn finishes what is in flight and exits), SIGKILL after
    `grace_s` seconds."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def serve(fd: int, static_dir: Path | None) -> None:
    """The child: the app from COMPEFT_HUB_* variables, served on the inherited socket."""
    settings = Settings()
    app = create_app(settings)
    if static_dir is not None:
        app.mount(FILES_PATH, StaticFiles(directory=static_dir), name="bench-files")
    config = uvicorn_config(
        WireCounter(app),
        host="127.0.0.1",
        port=0,
        deadlines=settings.connection_deadlines,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    server.run(sockets=[socket.socket(fileno=fd)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--static", type=Path, help="serve this folder under " + FILES_PATH)
    args = parser.parse_args()
    serve(args.fd, args.static)
