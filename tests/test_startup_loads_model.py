"""The API process loads the embedding model while starting, before it says it is ready.

Checked in a fresh interpreter: in this test process some other test may have loaded the model
already, and a check here could not fail.
"""

from __future__ import annotations

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
    result = subprocess.run(
        [sys.executable, "-c", STARTUP, str(tmp_path / "hub-data")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["before start: False", "once started: True"]
