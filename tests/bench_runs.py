"""Running a bench script as a person does (`python -m bench.X --quick`), for the smoke tests.

Every bench prints its figures and, as its last line, one JSON object with the key numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_bench(module: str, *args: str, timeout: int = 300) -> tuple[str, dict[str, Any]]:
    """The bench's stdout and its summary (the last line); a failure shows the end of its output."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPOSITORY,
        env={**os.environ, **OFFLINE},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(done.stdout.strip().splitlines()[-1])
