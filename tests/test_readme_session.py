"""The README's example session, rerun end to end from the README itself.

The blocks under `## Example session` are read from README.md at test time and run as a user
would: the curl session in bash, the client's Python in a fresh interpreter, the compose command
in bash, one after the other against the hub the first block starts. What the test environment
needs changed is listed here, and each substitution must apply, so a README edit that breaks one
fails here instead of silently running something else:

- `make serve &` -> the venv's `compeft-hub serve --port PORT` on a free port, its output in
  server.log (so the session's own output is only what its commands print);
- `127.0.0.1:8000` -> `127.0.0.1:PORT`;
- `.venv/bin/` -> the bin folder of the interpreter running the tests;
- the curl session ends with `printf %s "$TOKEN" > token`, and the Python block starts with
  `TOKEN = os.environ["TOKEN"]`: the token the session printed, kept as a user's shell keeps it,
  under the name the README's Python uses.

The environment is this process's without DATABASE_URL and COMPEFT_HUB_* (the README session is
the embedded default, whatever the suite runs against), plus COMPEFT_HUB_DATA_DIR and
COMPEFT_HUB_CACHE in the session folder, COMPEFT_HUB_ENDPOINT at PORT (the compose command, as
printed, talks to the default endpoint, where `make serve` listens) and PYTHONUNBUFFERED (the
hub's access log, in server.log, is how the test sees the upload's status).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from peft import PeftModel

from bench.seaweedfs import free_ports
from compeft_core.expert import CompressedExpert
from tests.test_client_compose import train_smol_expert
from tests.test_readme_snippets import README, block_after

pytestmark = pytest.mark.slow

SESSION = "## Example session"
COMPOSE = "Compose retrieved experts for a new task"
BASH = ["bash", "-euo", "pipefail", "-c"]
BLOCK_TIMEOUT_S = 600  # generous: two cores shared with other jobs; the session takes ~2 min
STOP_GRACE_S = 10.0
HEADLINES = [  # for the compose block's shots.jsonl: {"input": ..., "output": ...} per line
    ("Stocks soar as profits beat every forecast", "positive"),
    ("Floods destroy hundreds of homes in the valley", "negative"),
    ("Local team wins the championship after a thrilling final", "positive"),
    ("Factory closes, leaving two thousand without work", "negative"),
]


@dataclass(frozen=True)
class Session:
    """The user's folder after the curl session, and what a user's shell would hold."""

    folder: Path
    port: int
    env: dict[str, str]
    output: str  # what the bash block printed: the curl answers, one JSON document after another

    def answers(self) -> list[Any]:
        """The JSON documents curl printed, in order (curl -s adds no newline between them)."""
        decoder, text, found = json.JSONDecoder(), self.output.strip(), []
        while text:
            answer, end = decoder.raw_decode(text)
            found.append(answer)
            text = text[end:].lstrip()
        return found


def substituted(block: str, substitutions: dict[str, str]) -> str:
    """`block` with every substitution made in one pass (a replacement is never substituted
    again); each must apply, or the README changed under us."""
    for old in substitutions:
        assert old in block, f"the README's block no longer holds {old!r}:\n{block}"
    pattern = "|".join(re.escape(old) for old in substitutions)
    return re.sub(pattern, lambda match: substitutions[match[0]], block)


def run_in(folder: Path, env: dict[str, str], command: list[str]) -> subprocess.Popen[str]:
    """Start `command` in `folder` in its own process group, so what it leaves in the background
    (the hub) can be stopped with it."""
    return subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `process`, killed with its group past BLOCK_TIMEOUT_S."""
    try:
        stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    return process.returncode, stdout, stderr


def stop_group(group: int, port: int) -> None:
    """SIGTERM the process group, wait for the hub to stop listening, SIGKILL what is left.

    The hub outlives the bash that started it, so it is no child of ours to wait for; that its
    port refuses connections is what says it stopped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.fixture(scope="module")
def session(smollm2, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """The README's curl session run in a folder holding what it assumes (my-lora/,
    shots.jsonl); the hub it starts keeps running for the blocks after it."""
    folder = tmp_path_factory.mktemp("readme-session")
    # Any real SmolLM2 LoRA plays the README's news summariser: the compose tests' first expert.
    train_smol_expert(*smollm2, "capitals", folder).rename(folder / "my-lora")
    (folder / "shots.jsonl").write_text(
        "".join(
            json.dumps({"input": f"Headline: {h}\nSentiment:", "output": f" {s}"}) + "\n"
            for h, s in HEADLINES
        )
    )
    (port,) = free_ports(1)
    bin_dir = Path(sys.executable).parent
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k != "DATABASE_URL" and not k.startswith("COMPEFT_HUB_")
        },
        "PYTHONPATH": str(README.parent),
        "PYTHONUNBUFFERED": "1",  # server.log shows each request once answered
        "COMPEFT_HUB_DATA_DIR": str(folder / "hub-data"),
        "COMPEFT_HUB_CACHE": str(folder / "cache"),
        "COMPEFT_HUB_ENDPOINT": f"http://127.0.0.1:{port}",
    }
    block = substituted(
        block_after(SESSION, "bash"),
        {
            "make serve &": f"{bin_dir}/compeft-hub serve --port {port} >server.log 2>&1 &",
            "127.0.0.1:8000": f"127.0.0.1:{port}",
            ".venv/bin/": f"{bin_dir}/",
        },
    )
    bash = run_in(folder, env, [*BASH, block + 'printf %s "$TOKEN" > token\n'])
    try:
        status, stdout, stderr = finished(bash)
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        assert status == 0, f"{stderr}\nserver.log:\n{log}"
        env["TOKEN"] = (folder / "token").read_text()
        yield Session(folder, port, env, stdout)
    finally:
        stop_group(bash.pid, port)


def test_the_curl_session_uploads_lists_and_downloads_the_expert(session: Session) -> None:
    log = (session.folder / "server.log").read_text()
    assert '"POST /api/v1/experts/alice/news-summary/revisions HTTP/1.1" 201' in log
    answers = session.answers()
    upload = next(answer for answer in answers if "created" in answer)
    assert (upload["revision"], upload["created"]) == (1, True)
    listing = next(answer for answer in answers if "items" in answer)
    assert "alice/news-summary" in [item["id"] for item in listing["items"]]
    expert = CompressedExpert.from_bytes((session.folder / "expert.compeft").read_bytes())
    assert expert.density == pytest.approx(0.1)


def test_the_client_block_exports_a_folder_peft_loads(session: Session, smollm2) -> None:
    snippet = substituted(
        block_after(SESSION, "python"), {"127.0.0.1:8000": f"127.0.0.1:{session.port}"}
    )
    ran = subprocess.run(  # a fresh interpreter, as a user pastes it
        [sys.executable, "-c", 'import os\nTOKEN = os.environ["TOKEN"]\n' + snippet],
        cwd=session.folder,
        env=session.env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "alice/news-summary" in ran.stdout  # the search loop's print
    _, base = smollm2
    PeftModel.from_pretrained(copy.deepcopy(base), session.folder / "news-summary-peft")


def test_the_compose_block_writes_a_peft_folder_and_its_composition(
    session: Session, smollm2
) -> None:
    block = substituted(
        block_after(COMPOSE, "bash"), {".venv/bin/": f"{Path(sys.executable).parent}/"}
    )
    status, stdout, stderr = finished(run_in(session.folder, session.env, [*BASH, block]))
    assert status == 0, stderr
    assert "alice/news-summary" in stdout  # the table of weights
    merged = session.folder / "merged"
    composition = json.loads((merged / "composition.json").read_text())
    assert {name.split("@")[0] for name in composition["weights"]} == {"alice/news-summary"}
    _, base = smollm2
    PeftModel.from_pretrained(copy.deepcopy(base), merged)
