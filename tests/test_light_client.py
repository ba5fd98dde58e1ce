"""The client apart from the server: `pip install compeft-hub` (no extras) pulls, verifies and
decodes experts from a live hub, and neither it nor `compeft-hub --help` loads the server's stack.

The installed test builds the package from this checkout into a fresh virtual environment, as a
user would install it, and checks that torch, FAISS, SQLAlchemy and the web stack are absent
there, not merely unimported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from registry.client import HubClient
from tests.compeft_reference import reference_decompress
from tests.fixtures.live_hub import LiveHub

REPO = Path(__file__).resolve().parents[1]
# The packages the wheel is built from, as pyproject.toml lists them ("registry*" -> "registry").
PACKAGES = tuple(
    pattern.removesuffix("*")
    for pattern in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
)
# What only the server, the compressor or composition need: none of it may come with the client.
SERVER_STACK = (
    "torch",
    "faiss",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "boto3",
    "sentence_transformers",
    "transformers",
    "peft",
    "nevergrad",
    "jinja2",
)
INSTALL_TIMEOUT_S = 600
EXPERT = "alice/light"
DENSITY = 0.25

# Run inside the client venv: every module the client commands and HubClient need, loaded.
_LOADED_STACK = f"""
import json, sys
import registry.cli.main
from registry.client import HubClient
print(json.dumps(sorted(m for m in {SERVER_STACK!r} if m in sys.modules)))
"""
# Run with the checkout's code: `compeft-hub token list` over HTTP, then what it loaded.
_TOKEN_LIST = f"""
import json, sys
from registry.cli.main import app
try:
    app(["token", "list"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
print(json.dumps(sorted(m for m in {SERVER_STACK!r} if m in sys.modules)))
"""
_DECODE = """
import sys
import numpy as np
from registry.client import HubClient
url, expert, cache, out = sys.argv[1:]
with HubClient(url, cache_dir=cache, progress=False) as client:
    np.savez(out, **client.load_expert(expert).decompress_numpy(dtype=np.float32))
    try:
        client.load(expert)
    except ImportError as exc:
        print(exc)
"""


def _copy_source(target: Path) -> Path:
    """The files a wheel is built from, copied, so the build leaves nothing in the checkout."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the base package only, installed from a copy of this checkout."""
    root = tmp_path_factory.mktemp("light-client")
    source = _copy_source(root / "source")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", source],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    return venv


def _finished(
    program: Path | str, *args: str | Path, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """A command run in `cwd` (not the checkout, whose packages would shadow the installed
    ones), its output captured."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(program), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**environment, **env},
    )


def _run(program: Path | str, *args: str | Path, cwd: Path, **env: str) -> str:
    """stdout of a command that must succeed, or a failure that shows its stderr."""
    done = _finished(program, *args, cwd=cwd, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_client_and_the_cli_load_none_of_the_server_stack(tmp_path: Path) -> None:
    assert json.loads(_run(sys.executable, "-c", _LOADED_STACK, cwd=tmp_path)) == []


def test_a_users_token_commands_load_none_of_the_server_stack(
    live_hub: LiveHub, tmp_path: Path
) -> None:
    token = live_hub.hub.token("alice")
    *lines, loaded = _run(
        sys.executable,
        "-c",
        _TOKEN_LIST,
        cwd=tmp_path,
        PYTHONPATH=str(REPO),
        COMPEFT_HUB_ENDPOINT=live_hub.url,
        COMPEFT_HUB_TOKEN=token,
    ).splitlines()
    assert [line.split()[0] for line in lines] == [token.split("_")[1]]
    assert json.loads(loaded) == []


@pytest.mark.slow
def test_the_base_install_pulls_verifies_and_decodes_without_torch_or_the_server(
    client_venv: Path,
    live_hub: LiveHub,
    hub_client: HubClient,
    peft_adapter_folders: list[Path],
    tmp_path: Path,
) -> None:
    python = client_venv / "bin" / "python"
    found = _run(
        python,
        "-c",
        "import importlib.util, json; print(json.dumps("
        f"[m for m in {SERVER_STACK!r} if importlib.util.find_spec(m)]))",
        cwd=tmp_path,
    )
    assert json.loads(found) == []
    assert json.loads(_run(python, "-c", _LOADED_STACK, cwd=tmp_path)) == []

    folder = peft_adapter_folders[0]
    created = hub_client.upload(
        folder, EXPERT, description="Summarise news articles.", density=DENSITY
    )
    cache = tmp_path / "cache"
    pulled = Path(
        _run(
            client_venv / "bin" / "compeft-hub",
            "pull",
            EXPERT,
            "--endpoint",
            live_hub.url,
            cwd=tmp_path,
            COMPEFT_HUB_CACHE=str(cache),
        ).strip()
    )
    assert pulled.parent == cache / "blobs"
    assert hashlib.sha256(pulled.read_bytes()).hexdigest() == created.blob_sha256

    export = ["export", EXPERT, tmp_path / "peft", "--endpoint", live_hub.url]
    for command, extra in ((["serve"], "server"), (export, "torch")):
        refused = _finished(
            client_venv / "bin" / "compeft-hub",
            *command,
            cwd=tmp_path,
            COMPEFT_HUB_CACHE=str(cache),
        )
        assert refused.returncode == 1, refused.stderr
        assert f"pip install 'compeft-hub[{extra}]'" in refused.stderr

    out = tmp_path / "decoded.npz"
    said = _run(python, "-c", _DECODE, live_hub.url, EXPERT, cache, out, cwd=tmp_path)
    assert "pip install 'compeft-hub[torch]'" in said  # load() without torch says what to do
    weights = load_file(folder / "adapter_model.safetensors")
    expected = reference_decompress(
        weights,
        DENSITY,
        created.scope,
        None,
        torch.float32,
        factorisation=created.factorisation,
        scale=created.scale,
    )
    with np.load(out) as decoded:
        assert set(decoded.files) == set(expected)
        for name, tensor in expected.items():  # the reference's SVD differs in the last bits
            np.testing.assert_allclose(decoded[name], tensor.numpy(), rtol=1e-5, atol=0)
