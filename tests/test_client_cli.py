"""The client commands of `compeft-hub`, run in-process against a hub served over loopback HTTP.

The endpoint, token and cache come from COMPEFT_HUB_* variables, as a user would set them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from typer.testing import Result

from tests.fixtures.live_hub import TINY_BASE_MODEL, RunCli
from tests.test_peft_io import tiny_base

DESCRIPTION = "Answer trivia questions in one short sentence."


def upload(hub_cli: RunCli, folder: Path, expert: str, *options: str) -> Result:
    result = hub_cli("upload", folder, expert, "--description", DESCRIPTION, *options)
    assert result.exit_code == 0, result.output
    return result


def test_help_lists_the_client_commands_with_their_options(hub_cli: RunCli) -> None:
    result = hub_cli("--help")
    for command in (
        "upload",
        "pull",
        "export",
        "search",
        "list",
        "info",
        "delete",
        "merge",
        "compose",
        "whoami",
    ):
        assert command in result.output
    compose_help = hub_cli("compose", "--help").output
    for option in ("--query", "--examples", "--base-model", "--model", "--steps", "--optimizer"):
        assert option in compose_help


def test_upload_then_pull_prints_the_verified_cached_blob(
    hub_cli: RunCli, peft_adapter_folders: list[Path], tmp_path: Path
) -> None:
    uploaded = upload(
        hub_cli,
        peft_adapter_folders[0],
        "alice/qa",
        "--sample",
        "Who wrote Hamlet?",
        "--tag",
        "qa",
        "--density",
        "0.25",
        "--scope",
        "global",
    )
    assert uploaded.stdout.startswith("alice/qa@1: ")
    assert "bits/param, compeft, density 0.25, balanced; fidelity: cosine 0." in uploaded.stdout
    fp16, as_uploaded = re.search(
        r"\(([\d.]+)x vs fp16, ([\d.]+)x vs the uploaded file", uploaded.stdout
    ).groups()
    assert float(as_uploaded) > float(fp16)  # a float32 file: more than 2 bytes a parameter
    pulled = hub_cli("pull", "alice/qa@1")
    assert pulled.exit_code == 0, pulled.output
    path = Path(pulled.stdout.strip())
    assert path.parent == tmp_path / "cli-cache" / "blobs" and path.is_file()


def test_export_writes_a_folder_peft_loads(
    hub_cli: RunCli, peft_adapter_folders: list[Path], tmp_path: Path
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/qa")
    result = hub_cli("export", "alice/qa", tmp_path / "exported", "--alpha", "2.0")
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()) == tmp_path / "exported"
    model = PeftModel.from_pretrained(tiny_base(), tmp_path / "exported")
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_export_refuses_a_folder_with_files_unless_forced(
    hub_cli: RunCli, peft_adapter_folders: list[Path], tmp_path: Path
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/qa")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "adapter_config.json").write_text("my own adapter")
    refused = hub_cli("export", "alice/qa", out)
    assert refused.exit_code == 1
    assert f"error: {out} is not empty; pass --force" in refused.stderr
    assert (out / "adapter_config.json").read_text() == "my own adapter"
    forced = hub_cli("export", "alice/qa", out, "--force")
    assert forced.exit_code == 0, forced.output
    PeftModel.from_pretrained(tiny_base(), out)
    (tmp_path / "a-file").write_text("x")
    onto_file = hub_cli("export", "alice/qa", tmp_path / "a-file", "--force")
    assert onto_file.exit_code == 1 and "is a file; give a folder" in onto_file.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["merge", "alice/one", "alice/two"],
        ["compose", "--base-model", TINY_BASE_MODEL, "--query", "q"],
    ],
    ids=["merge", "compose"],
)
def test_merge_and_compose_refuse_a_folder_with_files_before_any_work(
    hub_cli: RunCli, tmp_path: Path, command: list[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    model = tmp_path / "model"
    model.mkdir()
    shots = tmp_path / "shots.jsonl"
    shots.write_text('{"input": "2+2?", "output": "4"}\n')
    extra = ["--model", model, "--examples", shots] if command[0] == "compose" else []
    result = hub_cli(*command, *extra, "--out", out)
    assert result.exit_code == 1
    assert f"error: {out} is not empty; pass --force" in result.stderr
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("method", ["ties", "task_arithmetic"])
def test_merge_writes_one_adapter_of_the_same_shapes(
    hub_cli: RunCli, peft_adapter_folders: list[Path], tmp_path: Path, method: str
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/one")
    upload(hub_cli, peft_adapter_folders[1], "alice/two")
    out = tmp_path / "merged"
    result = hub_cli(
        "merge",
        "alice/one",
        "alice/two@1",
        "--weights",
        "0.5,0.5",
        "--method",
        method,
        "--density",
        "0.5",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    merged = load_file(out / "adapter_model.safetensors")
    assert merged.keys() == load_file(peft_adapter_folders[0] / "adapter_model.safetensors").keys()
    assert all(torch.isfinite(tensor).all() for tensor in merged.values())
    PeftModel.from_pretrained(tiny_base(), out)


def test_search_prints_the_best_experts_first(
    hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/trivia")
    hub_cli(
        "upload", peft_adapter_folders[1], "alice/poems", "-d", "Write poems about the sea [/b]."
    )
    result = hub_cli("search", "a poem about the waves", "--base-model", TINY_BASE_MODEL, "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.index("alice/poems@1") < result.stdout.index("alice/trivia@1")
    assert "[/b]." in result.stdout  # printed as is, not as markup (the line may wrap before it)
    # Each hit shows the parts its score was fused from: dense/description/lexical cosines.
    assert len(re.findall(r"│ 0\.\d{3} │ 0\.\d\d/0\.\d\d/0\.\d\d │", result.stdout)) == 2


def test_errors_print_one_line_and_exit_1(
    hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    missing = hub_cli("pull", "alice/missing")
    assert missing.exit_code == 1
    assert missing.output.startswith("error: GET ") and "404" in missing.output
    assert "Traceback" not in missing.output
    upload(hub_cli, peft_adapter_folders[0], "alice/one")
    wrong_count = hub_cli("merge", "alice/one", "--weights", "0.5,0.5", "--out", "unused")
    assert wrong_count.exit_code == 1
    assert "error: --weights has 2 numbers for 1 experts" in wrong_count.output
    forbidden = hub_cli("upload", peft_adapter_folders[0], "bob/qa", "--description", DESCRIPTION)
    assert forbidden.exit_code == 1 and "403" in forbidden.output
