"""Schemathesis over the OpenAPI schema of the running app: no generated request gets a 5xx,
and every answer conforms to the response schema the spec promises for it.

Every operation of /openapi.json is called in-process (ASGI) with requests generated from its
schema, valid ones (positive mode) and invalid ones (negative mode: wrong types, missing fields,
out-of-range numbers, odd strings in paths, queries and headers), with a valid read-write token so
that write routes are exercised past authentication. CI runs `MAX_EXAMPLES` cases per operation
and mode; `COMPEFT_HUB_SCHEMATHESIS_EXAMPLES=500 pytest tests/test_schemathesis.py -s` is the long
run recorded in docs/reliability.md (it prints the number of cases per operation).

schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) fails on pytest 9
(`Function` has no `_nodeid`), so each operation's strategy is driven by hypothesis directly.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation

from bench.adapter_files import lora_adapter
from tests.fixtures.registry import Hub, auth, open_hub

MAX_EXAMPLES = int(os.environ.get("COMPEFT_HUB_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Storage is not what is under test here: the local folder."""
    return (tmp_path / "blobs").as_uri()


def exercise(operation: APIOperation, mode: GenerationMode, token: str) -> int:
    """Run up to `MAX_EXAMPLES` generated cases of `operation`; return how many were sent.

    An operation without inputs (GET /healthz) has no invalid variant: 0 negative cases.
    """
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: Case) -> None:
        nonlocal sent
        response = case.call(headers=auth(token))
        sent += 1
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    try:
        call()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE, f"no valid request for {operation.label}"
    return sent


@pytest.fixture
def unlimited_hub(hub: Hub) -> Iterator[Hub]:
    """The hub without the write rate limit: thousands of generated writes share one token."""
    with open_hub(hub.settings.model_copy(update={"writes_per_minute": 0})) as unlimited:
        yield unlimited


def test_generated_requests_never_get_a_server_error_nor_an_answer_off_the_schema(
    unlimited_hub: Hub,
) -> None:
    hub = unlimited_hub
    token = hub.token("alice")
    assert hub.upload("alice/seeded", lora_adapter(), token=token).status_code == 201
    schema = schemathesis.openapi.from_asgi("/openapi.json", hub.app)
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    cases = Counter(
        {
            f"{mode.value} {operation.label}": exercise(operation, mode, token)
            for operation in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        }
    )
    print(f"schemathesis: {cases.total()} cases over {len(operations)} operations: {dict(cases)}")
    assert len(operations) >= 7
    assert cases.total() >= len(operations) * 2
