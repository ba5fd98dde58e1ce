"""Every request body is capped and every client address is rate-limited, not only uploads.

The hostile pass sent a 200 MiB JSON body to `POST /api/v1/search`, unauthenticated: FastAPI
buffered and parsed all of it (600 MB more server memory). Bodies over `max_request_bytes` now
answer 413 before they are read (declared length) or as soon as they pass it (chunked); uploads
keep their own, larger streaming limit. Reads are limited per client address as writes are per
token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bench.adapter_files import lora_adapter
from tests.fixtures.registry import Hub, open_hub

SMALL_CAP = 2048


@pytest.fixture
def capped_hub(hub: Hub) -> Iterator[Hub]:
    """The same stores, served with a 2 KiB cap on request bodies and 3 requests at once."""
    limits = {"max_request_bytes": SMALL_CAP, "request_burst": 3, "requests_per_minute": 6}
    with open_hub(hub.settings.model_copy(update=limits)) as capped:
        yield capped


def _search_body(size: int) -> bytes:
    return json.dumps({"query": "x" * size, "base_model": "tiny/llama"}).encode()


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_a_search_body_over_the_cap_is_refused_by_its_declared_length(hub: Hub) -> None:
    cap = hub.settings.max_request_bytes
    response = hub.client.post(
        "/api/v1/search",
        content=_search_body(2 * cap),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert f"exceeds the limit of {cap} bytes" in response.json()["detail"]


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_a_chunked_body_is_stopped_once_it_passes_the_cap(capped_hub: Hub) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        body = _search_body(100 * SMALL_CAP)
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    response = capped_hub.client.post(
        "/api/v1/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["detail"]


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_an_upload_over_the_request_cap_keeps_its_own_limit(capped_hub: Hub) -> None:
    adapter = lora_adapter()
    assert len(adapter.weights) > SMALL_CAP
    token = capped_hub.token("alice")
    assert capped_hub.upload("alice/big", adapter, token=token).status_code == 201


@pytest.mark.parametrize("blob_store_url", ["local"], indirect=True)
def test_requests_beyond_the_address_rate_limit_answer_429_but_health_checks_do_not_count(
    capped_hub: Hub,
) -> None:
    hub = capped_hub
    for _ in range(5):
        assert hub.client.get("/healthz").status_code == 200
    statuses = [hub.client.get("/api/v1/experts").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = hub.client.get("/api/v1/experts")
    assert refused.status_code == 429
    assert "too many requests from your address" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) > 0
    page = hub.client.get("/experts")
    assert page.status_code == 429 and "text/html" in page.headers["content-type"]
