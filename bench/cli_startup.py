"""How fast the `compeft-hub` command starts: `--help` against the 1 s target (issue 13).

Each figure is the wall time of a fresh interpreter, so it counts what a user waits for: Python
itself, the imports and typer. The baseline, measured in the same run, is what the command loaded
before it imported per command: the server app, the compressor (torch) and the client's decoder.
The interpreter alone (`python -c pass`) is printed as the floor no change can go below.

    python -m bench.cli_startup            # 7 runs of each, best and median
    python -m bench.cli_startup --quick    # 1 run of each (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench.timing import Timing, repeated, timed

TARGET_S = 1.0
# What `import registry.cli.main` loaded before the commands imported their own dependencies.
EAGER_IMPORTS = (
    "registry.api.app",
    "registry.client.hub",
    "compeft_core.compress",
    "retrieval.embedder",
    "storage.factory",
)


def _command() -> list[str]:
    """The installed `compeft-hub` script of this interpreter's environment."""
    script = Path(sys.executable).parent / "compeft-hub"
    return [str(script if script.exists() else shutil.which("compeft-hub") or "compeft-hub")]


def _wall_time(argv: list[str]) -> float:
    seconds, _ = timed(lambda: subprocess.run(argv, check=True, capture_output=True))
    return seconds


def measure(repeats: int) -> dict[str, Timing]:
    """Fresh-process wall times: the floor, `--help`, a client command's help, the baseline."""
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "compeft-hub --help": [*_command(), "--help"],
        "compeft-hub pull --help": [*_command(), "pull", "--help"],
        "baseline: eager imports": [sys.executable, "-c", f"import {', '.join(EAGER_IMPORTS)}"],
    }
    return {
        name: Timing(repeated(lambda argv=argv: _wall_time(argv), repeats))
        for name, argv in commands.items()
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each (a smoke test)")
    args = parser.parse_args(argv)
    timings = measure(1 if args.quick else 7)
    for name, timing in timings.items():
        print(f"{name:<26} best {timing.best:6.3f} s   median {timing.median:6.3f} s")
    help_s = timings["compeft-hub --help"].median
    baseline_s = timings["baseline: eager imports"].median
    summary = {
        "help_s": help_s,
        "baseline_s": baseline_s,
        "speedup_vs_baseline": baseline_s / help_s,
        "target_s": TARGET_S,
        "meets_target": help_s < TARGET_S,
    }
    print(
        f"--help: {help_s:.3f} s median, target {TARGET_S:.1f} s; "
        f"{summary['speedup_vs_baseline']:.1f}x faster than importing the stack it loaded before"
    )
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
