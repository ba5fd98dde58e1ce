"""The README's Python that runs without a hub works as printed (a user pastes it as is), and its
curl calls of the listing and the GET search answer on a hub as the README says."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from bench.adapter_files import lora_adapter
from compeft_core.expert import CompressedExpert
from tests.fixtures.registry import Hub

README = Path(__file__).resolve().parent.parent / "README.md"
DATA_OPTIONS = ("-d", "--data-urlencode")  # curl's options that send a field


def block_after(heading: str, language: str) -> str:
    """The first ```language block after the line `heading` in the README, read now (the tests
    run what the README says today)."""
    text = README.read_text()
    assert heading in text, f"the README no longer has {heading!r}"
    return text.split(heading, 1)[1].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def curl_get(marker: str) -> tuple[str, list[tuple[str, str]]]:
    """The path and query parameters of the README's first `curl` command holding `marker`, as
    curl sends them: the URL's own query, then `-d`/`--data-urlencode` fields (which `-G` turns
    into query parameters; without it curl would POST them)."""
    text = README.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("curl") and marker in line)
    words = shlex.split(line, comments=True)
    url = urlsplit(next(word for word in words if word.startswith("http")))
    fields = [value for option, value in pairwise(words) if option in DATA_OPTIONS]
    assert not fields or "-G" in words, f"{line!r} would POST its fields"
    return url.path, parse_qsl(url.query) + [parse_qsl(field)[0] for field in fields]


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """The curl calls read no blobs: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


def test_the_curl_search_and_listing_find_the_uploaded_expert(hub: Hub) -> None:
    search_path, search_params = curl_get("/api/v1/search")
    metadata = {"task_description": "Summarise news articles in one sentence", "tags": ["news"]}
    adapter = lora_adapter(seed=1, base_model_name_or_path=dict(search_params)["base_model"])
    uploaded = hub.upload("alice/news-summary", adapter, token=hub.token(), metadata=metadata)
    assert uploaded.status_code == 201, uploaded.text

    found = hub.client.get(search_path, params=search_params)
    assert found.status_code == 200, found.text
    assert [result["id"] for result in found.json()["results"]] == ["alice/news-summary"]
    list_path, list_params = curl_get("sort=recent")
    listed = hub.client.get(list_path, params=list_params)
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == ["alice/news-summary"]


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
