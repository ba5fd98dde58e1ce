"""The README's Python that runs without a hub works as printed (a user pastes it as is)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.adapter_files import lora_adapter
from compeft_core.expert import CompressedExpert

README = Path(__file__).resolve().parent.parent / "README.md"


def block_after(heading: str, language: str) -> str:
    """The first ```language block after the line `heading` in the README, read now (the tests
    run what the README says today)."""
    text = README.read_text()
    assert heading in text, f"the README no longer has {heading!r}"
    return text.split(heading, 1)[1].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_compress_without_the_server_runs_and_writes_a_blob(tmp_path: Path) -> None:
    adapter = lora_adapter(seed=3)
    (tmp_path / "my-lora").mkdir()
    (tmp_path / "my-lora" / "adapter_config.json").write_bytes(adapter.config)
    (tmp_path / "my-lora" / "adapter_model.safetensors").write_bytes(adapter.weights)
    snippet = block_after("Compress without the server:", "python")
    ran = subprocess.run(  # a fresh interpreter, as a user pastes it
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(README.parent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "bits_per_param" in ran.stdout  # print(expert.metadata)
    expert = CompressedExpert.from_bytes((tmp_path / "my-lora.compeft").read_bytes())
    assert expert.density == pytest.approx(0.1)
