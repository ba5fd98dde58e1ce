"""Slow and idle clients against a real `compeft-hub serve`, over raw sockets; links and Host.

uvicorn alone keeps a connection that sends nothing, or trickles its headers a byte at a time,
open for ever, and waits for ever on a body that stalls; and it closes idle keep-alive
connections after 5 s, which raced the clients' next request (the flaky PostgreSQL fault test:
an upload sent into a connection the server was closing got ECONNRESET in the "up" phase, before
any outage). The server now has header and body deadlines (1 s here) and a 75 s keep-alive.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from bench.adapter_files import lora_adapter
from bench.api_process import ApiProcess
from tests.fixtures.registry import Hub, open_hub

DEADLINE_S = 1
WAIT_S = 15  # far above the deadline: the box is shared


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """`compeft-hub serve` on an embedded SQLite file (what is under test is HTTP, not SQL;
    DATABASE_URL of the CI must not leak in), with 1 s header and body deadlines."""
    folder = tmp_path_factory.mktemp("slow-clients")
    environment = {
        "COMPEFT_HUB_DATA_DIR": str(folder / "data"),
        "COMPEFT_HUB_DATABASE_URL": f"sqlite:///{folder / 'data' / 'hub.sqlite3'}",
        "COMPEFT_HUB_AUTO_UPGRADE": "true",
        "COMPEFT_HUB_HEADER_TIMEOUT_S": str(DEADLINE_S),
        "COMPEFT_HUB_BODY_TIMEOUT_S": str(DEADLINE_S),
    }
    process = ApiProcess(environment, folder / "api.log")
    process.start()
    yield process
    process.stop()


def _connect(server: ApiProcess) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    connection.settimeout(WAIT_S)
    return connection


def _closed_by_server(connection: socket.socket) -> bool:
    """True when the server closes the connection (EOF or reset) before WAIT_S."""
    try:
        return connection.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _answer(connection: socket.socket) -> tuple[int, bytes]:
    """The status and the whole of one HTTP answer (headers and Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    length = int(lengths[0].split(b":")[1]) if lengths else 0
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        body += chunk
    return int(head.split(b"\r\n", 1)[0].split()[1]), head + b"\r\n\r\n" + body


def test_a_connection_that_sends_nothing_is_closed_after_the_header_deadline(
    server: ApiProcess,
) -> None:
    with _connect(server) as connection:
        started = time.monotonic()
        assert _closed_by_server(connection)
        assert time.monotonic() - started < WAIT_S


def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_deadline(server: ApiProcess) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nUser-Agent: " + b"x" * 200 + b"\r\n\r\n"
    sent = 0
    with _connect(server) as connection:
        try:
            for byte in request:
                connection.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)  # each byte would reset uvicorn's own timer
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            pytest.fail("the server read every trickled byte of the headers")
    assert sent < len(request)


def test_a_stalled_body_answers_408(server: ApiProcess) -> None:
    with _connect(server) as connection:
        connection.sendall(
            b"POST /api/v1/search HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"query": "'
        )
        status, answer = _answer(connection)
    assert status == 408
    assert b"no byte of the request body arrived" in answer


def test_an_idle_keep_alive_connection_outlives_uvicorns_default_of_5_s(
    server: ApiProcess,
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"
    with _connect(server) as connection:
        connection.sendall(request)
        assert _answer(connection)[0] == 200
        time.sleep(6)
        connection.sendall(request)
        assert _answer(connection)[0] == 200


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_links_and_snippets_never_follow_the_host_header(hub: Hub) -> None:
    hostile = {"Host": "evil.example"}
    page = hub.client.get("/", headers=hostile)
    assert page.status_code == 200 and b"evil.example" not in page.content
    public = hub.settings.model_copy(update={"public_url": "https://hub.example.org"})
    with open_hub(public) as configured:
        token = configured.token("alice")
        configured.upload("alice/linked", lora_adapter(), token=token)
        expert_page = configured.client.get("/experts/alice/linked", headers=hostile)
    assert b"--endpoint https://hub.example.org" in expert_page.content
    assert b"evil.example" not in expert_page.content


def test_dropped_and_timed_out_clients_leave_no_traceback_in_the_log(server: ApiProcess) -> None:
    assert "Traceback" not in server.log_tail(200)
