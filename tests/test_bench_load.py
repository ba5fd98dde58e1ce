"""bench/load.py --quick: two API processes, SeaweedFS and PostgreSQL under 64 clients."""

from __future__ import annotations

import pytest

from tests.bench_runs import run_bench
from tests.fixtures.database import postgres_server_url


@pytest.mark.slow
def test_quick_load_bench_has_no_server_error_and_a_consistent_store() -> None:
    server = postgres_server_url()
    if server is None:
        pytest.skip("DATABASE_URL does not name a PostgreSQL server (the bench shares one)")
    output, summary = run_bench(
        "bench.load",
        "--quick",
        "--database-server",
        server.render_as_string(hide_password=False),
        timeout=500,
    )
    assert summary["requests"] == 300
    assert summary["errors_5xx"] == 0, output[-6000:]
    assert summary["no_answer"] == 0
    assert (summary["dangling"], summary["orphans"], summary["damaged_uploads"]) == (0, 0, 0)
    assert summary["verified_uploads"] > 0
