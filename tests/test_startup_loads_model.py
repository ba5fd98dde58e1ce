"""The API process loads the embedding model while starting, before it says it is ready.

Checked in a fresh interpreter: in this test process some other test may have loaded the model
already, and a check here could not fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STARTUP = """
import sys
from fastapi.testclient import TestClient
import retrieval.embedder
from registry.api.app import create_app
from registry.settings import Settings

app = create_app(Settings(data_dir=sys.argv[1]))
print("before start:", retrieval.embedder._loaded_model is not None)
with TestClient(app):  # runs the lifespan, as uvicorn does before "startup complete"
    print("once started:", retrieval.embedder._loaded_model is not None)
"""


def test_the_embedding_model_is_loaded_before_the_app_serves(tmp_path: Path) -> None:
    # The embedded default (SQLite in the folder given), whatever database this run's tests use.
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL" and not name.startswith("COMPEFT_HUB_")
    }
    result = subprocess.run(
        [sys.executable, "-c", STARTUP, str(tmp_path / "hub-data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["before start: False", "once started: True"]
