"""Access control: tokens never stored or logged, constant-time checks, owner-only writes.

- The database holds a token's lookup id, a per-token random salt and sha256(salt + secret):
  neither the token nor its secret appears in any column of any table.
- The secret is compared with `hmac.compare_digest`.
- Every write operation of the OpenAPI schema (found there, so a new one is covered the day it is
  added) answers 401 without a token, 403 to another user's token and to the owner's read-only
  token, and succeeds with the owner's read-write token.
- Writes (uploads, deletes) are rate-limited per token (per API process): 429 with Retry-After.
- Nothing the server logs, at DEBUG level in-process or in the access log of a real
  `compeft-hub serve`, contains a token or a secret, after failed logins, uploads and deletes.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from bench.adapter_files import lora_adapter
from bench.api_process import ApiProcess, settings_environment, upload_form
from registry.api.rate_limits import RateLimiter
from registry.db.models import ApiToken, Base
from registry.errors import TooManyRequestsError
from tests.fixtures.registry import Hub, auth, open_hub

WRITE_METHODS = {"post", "put", "patch", "delete"}


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    return (tmp_path / "blobs").as_uri()


def every_stored_value(hub: Hub) -> str:
    """Every value of every row of every table, as one string."""
    with hub.sessions() as session:
        return "\n".join(
            repr(tuple(row))
            for table in Base.metadata.sorted_tables
            for row in session.execute(text(f"SELECT * FROM {table.name}"))
        )


def secret_of(token: str) -> str:
    return token.split("_", 2)[2]


def test_database_holds_salted_hashes_never_a_token_or_its_secret(hub: Hub) -> None:
    tokens = [hub.token("alice"), hub.token("alice", read_only=True), hub.token("bob")]
    assert hub.upload("alice/a", lora_adapter(), token=tokens[0]).status_code == 201
    stored = every_stored_value(hub)
    for token in tokens:
        assert token not in stored
        assert secret_of(token) not in stored
    with hub.sessions() as session:
        rows = session.scalars(select(ApiToken)).all()
    assert len({row.salt for row in rows}) == len({row.secret_hash for row in rows}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{64}", row.secret_hash) for row in rows)


def test_secret_is_compared_in_constant_time(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    token = hub.token("alice")
    compared: list[tuple[str, str]] = []
    compare_digest = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr("registry.services.accounts.hmac.compare_digest", spy)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert hub.client.delete("/api/v1/experts/alice/a", headers=auth(wrong)).status_code == 401
    assert len(compared) == 1


def write_operations(hub: Hub) -> list[tuple[str, str]]:
    """(method, path) of every write under /experts/{owner}/{name} in the OpenAPI schema."""
    paths: dict[str, dict[str, Any]] = hub.app.openapi()["paths"]
    return sorted(
        (method, path)
        for path, operations in paths.items()
        for method in operations
        if method in WRITE_METHODS and "{owner}" in path
    )


def send_write(hub: Hub, method: str, path: str, token: str | None) -> httpx.Response:
    url = path.format(owner="alice", name="victim", revision="1")
    body = upload_form(lora_adapter(seed=5)) if method == "post" else {}
    return hub.client.request(method.upper(), url, headers=auth(token), **body)


def test_every_write_operation_is_owner_only(hub: Hub) -> None:
    owner = hub.token("alice")
    callers: dict[str, tuple[str | None, int]] = {
        "anonymous": (None, 401),
        "garbage": ("chub_0123456789abcdef_nope", 401),
        "another user": (hub.token("bob"), 403),
        "owner, read-only": (hub.token("alice", read_only=True), 403),
    }
    operations = write_operations(hub)
    assert {method for method, _ in operations} == {"post", "delete"}
    for method, path in operations:
        assert hub.upload("alice/victim", lora_adapter(), token=owner).status_code == 201
        for who, (token, status) in callers.items():
            answer = send_write(hub, method, path, token)
            assert answer.status_code == status, f"{who}: {method} {path}: {answer.text}"
        assert send_write(hub, method, path, owner).status_code in (201, 204)


def assert_no_secret(text_seen: str, tokens: list[str]) -> None:
    for token in tokens:
        assert token not in text_seen
        assert secret_of(token) not in text_seen


def exercise_auth(send: Callable[..., httpx.Response], tokens: list[str]) -> None:
    """Failed logins (near misses of real tokens), an upload, a forbidden and a real delete."""
    owner, read_only = tokens
    for wrong in (owner[:-1] + "x", owner + "x", read_only.replace("_", "-"), "Basic " + owner):
        send("DELETE", "/api/v1/experts/alice/logged", headers={"Authorization": wrong})
    send(
        "POST",
        "/api/v1/experts/alice/logged/revisions",
        headers=auth(owner),
        **upload_form(lora_adapter()),
    )
    send("DELETE", "/api/v1/experts/alice/logged", headers=auth(read_only))
    send("DELETE", "/api/v1/experts/alice/logged", headers=auth(owner))


def test_no_secret_in_logs_in_process(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    tokens = [hub.token("alice"), hub.token("alice", read_only=True)]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # SQL and its parameters
    exercise_auth(hub.client.request, tokens)
    assert "sqlalchemy.engine" in {record.name.rsplit(".", 1)[0] for record in caplog.records}
    assert_no_secret(caplog.text, tokens)


def test_no_secret_in_the_log_of_a_real_server(hub: Hub, tmp_path: Path) -> None:
    tokens = [hub.token("alice"), hub.token("alice", read_only=True)]
    server = ApiProcess(settings_environment(hub.settings), tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            exercise_auth(client.request, tokens)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert '"DELETE /api/v1/experts/alice/logged HTTP/1.1" 401' in log  # the access log is on
    assert_no_secret(log, tokens)


def test_write_rate_limit_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=6, burst=2, clock=lambda: now[0])
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(TooManyRequestsError, match="at most 6 a minute") as refused:
        limiter.take("a")
    assert refused.value.retry_after == 10
    limiter.take("b")  # every token has its own bucket
    now[0] = 10.0
    limiter.take("a")
    with pytest.raises(TooManyRequestsError):
        limiter.take("a")
    RateLimiter(per_minute=0, burst=1).take("a")  # 0: no limit


@pytest.fixture
def limited_hub(hub: Hub) -> Iterator[Hub]:
    """The same stores, served with a limit of 2 writes at once and 1 a minute per token."""
    limits = {"write_burst": 2, "writes_per_minute": 1}
    with open_hub(hub.settings.model_copy(update=limits)) as limited:
        yield limited


def test_writes_beyond_the_rate_limit_answer_429_and_reads_do_not_count(limited_hub: Hub) -> None:
    hub = limited_hub
    token, other = hub.token("alice"), hub.token("alice")
    for seed in (1, 2):
        assert hub.upload("alice/a", lora_adapter(seed=seed), token=token).status_code == 201
    refused = hub.client.delete("/api/v1/experts/alice/a", headers=auth(token))
    assert refused.status_code == 429, refused.text
    assert "at most 1 a minute" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) > 0
    assert hub.client.get("/api/v1/experts/alice/a", headers=auth(token)).status_code == 200
    assert hub.client.delete("/api/v1/experts/alice/a", headers=auth(other)).status_code == 204
