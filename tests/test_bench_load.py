"""bench/load.py --quick: two API processes, SeaweedFS and PostgreSQL under 64 clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.database import postgres_server_url

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_load_bench_has_no_server_error_and_a_consistent_store() -> None:
    server = postgres_server_url()
    if server is None:
        pytest.skip("DATABASE_URL does not name a PostgreSQL server (the bench shares one)")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--quick",
            "--database-server",
            server.render_as_string(hide_password=False),
        ],
        cwd=REPOSITORY,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["requests"] == 300
    assert summary["errors_5xx"] == 0, completed.stdout[-6000:]
    assert summary["no_answer"] == 0
    assert (summary["dangling"], summary["orphans"], summary["damaged_uploads"]) == (0, 0, 0)
    assert summary["verified_uploads"] > 0
