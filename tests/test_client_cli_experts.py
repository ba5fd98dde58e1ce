"""`compeft-hub list`, `info` and `delete` against a hub served over loopback HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import Result

from tests.fixtures.live_hub import TINY_BASE_MODEL, LiveHub, RunCli
from tests.test_client_cli import DESCRIPTION, upload


def test_list_shows_each_expert_with_its_latest_revision_and_pages(
    hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/qa", "--tag", "Trivia")
    upload(hub_cli, peft_adapter_folders[1], "alice/qa")
    upload(hub_cli, peft_adapter_folders[1], "alice/poems")
    listed = hub_cli("list")
    assert listed.exit_code == 0, listed.output
    assert "experts 1-2 of 2" in listed.stdout
    rows = [line for line in listed.stdout.splitlines() if "alice/" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["alice/qa@2", "alice/poems@1"]
    assert all(TINY_BASE_MODEL in row for row in rows)
    first = hub_cli("list", "--limit", "1")
    assert "experts 1-1 of 2" in first.stdout and "more: --offset 1" in first.stderr
    tagged = hub_cli("list", "--tag", "trivia")  # the first revision's tag: not the latest's
    assert "experts none of 0" in tagged.stdout


def listed_ids(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [line.split("│")[1].strip() for line in result.stdout.splitlines() if "alice/" in line]


def test_list_searches_text_and_sorts(hub_cli: RunCli, peft_adapter_folders: list[Path]) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/zeta", "--tag", "quiz")
    upload(hub_cli, peft_adapter_folders[1], "alice/poems", "--tag", "poetry")
    upload(hub_cli, peft_adapter_folders[1], "alice/alpha", "--tag", "Quiz")
    assert listed_ids(hub_cli("list", "-q", "QUIZ")) == ["alice/zeta@1", "alice/alpha@1"]
    by_name = hub_cli("list", "--query", "quiz", "--sort", "name")
    assert listed_ids(by_name) == ["alice/alpha@1", "alice/zeta@1"]
    assert "experts 1-2 of 2" in by_name.stdout
    recent = ["alice/alpha@1", "alice/poems@1", "alice/zeta@1"]
    assert listed_ids(hub_cli("list", "--sort", "recent")) == recent
    bad = hub_cli("list", "--sort", "newest")
    assert bad.exit_code == 2
    said = " ".join(bad.output.replace("│", " ").split())  # unwrapped from typer's error box
    assert "'newest' is not one of 'created', 'recent', 'name'" in said


def test_info_shows_what_the_hub_records_about_a_revision(
    live_hub: LiveHub, hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/qa", "--tag", "trivia")
    shown = hub_cli("info", "alice/qa@1")
    assert shown.exit_code == 0, shown.output
    detail = live_hub.hub.client.get("/api/v1/experts/alice/qa/revisions/1").json()
    fields = dict(line.strip().split("  ", 1) for line in shown.stdout.splitlines() if line.strip())
    assert fields["expert"] == "alice/qa@1"
    assert fields["task"] == DESCRIPTION
    assert fields["base model"] == TINY_BASE_MODEL
    assert fields["tags"] == "trivia"
    assert fields["message"] == "none"
    assert fields["blob sha256"] == detail["blob_sha256"]
    assert fields["size"].startswith(
        f"{detail['blob_bytes']} bytes ({detail['compression_ratio_fp16']:.1f}x vs fp16, "
    )
    assert fields["fidelity"].startswith(f"cosine {detail['fidelity']['cosine']['mean']:.2f}")
    missing = hub_cli("info", "alice/nothing")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ")


def test_upload_message_shows_in_info_and_an_identical_upload_says_so(
    hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/qa", "-m", "trained on 2k questions")
    shown = hub_cli("info", "alice/qa")
    assert "  message  trained on 2k questions\n" in shown.stdout
    again = upload(hub_cli, peft_adapter_folders[0], "alice/qa", "--message", "again")
    assert again.stdout.startswith("alice/qa@1: ")
    assert again.stderr == (
        "warning: identical to revision 1 (same adapter, compression and metadata): "
        "no new revision was made\n"
    )
    assert "  message  trained on 2k questions\n" in hub_cli("info", "alice/qa@1").stdout


def test_delete_asks_first_and_removes_the_expert(
    live_hub: LiveHub, hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    upload(hub_cli, peft_adapter_folders[0], "alice/qa")
    declined = hub_cli("delete", "alice/qa", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert live_hub.hub.client.get("/api/v1/experts/alice/qa").status_code == 200
    deleted = hub_cli("delete", "alice/qa", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout == "deleted alice/qa\n"
    assert live_hub.hub.client.get("/api/v1/experts/alice/qa").status_code == 404
    with_revision = hub_cli("delete", "alice/qa@1", "--yes")
    assert with_revision.exit_code == 1
    assert "delete removes the whole expert; give owner/name" in with_revision.stderr


def with_base_model(folder: Path, base_model: str, tmp_path: Path) -> Path:
    """A copy of the adapter folder whose config names another base model."""
    copy = tmp_path / base_model.replace("/", "--")
    shutil.copytree(folder, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": base_model})
    )
    return copy


def test_search_without_a_base_model_uses_the_hubs_only_one_or_names_them(
    live_hub: LiveHub, hub_cli: RunCli, peft_adapter_folders: list[Path], tmp_path: Path
) -> None:
    empty = hub_cli("search", "trivia")
    assert empty.exit_code == 1
    assert "error: the hub has no experts yet" in empty.stderr
    upload(hub_cli, peft_adapter_folders[0], "alice/qa")
    found = hub_cli("search", "trivia questions")
    assert found.exit_code == 0, found.output
    assert f"base model: {TINY_BASE_MODEL} (the hub's only one)" in found.stderr
    assert "alice/qa@1" in found.stdout
    upload(hub_cli, with_base_model(peft_adapter_folders[1], "other/base", tmp_path), "alice/other")
    assert live_hub.hub.client.get("/api/v1/base-models").json() == {
        "base_models": sorted(["other/base", TINY_BASE_MODEL])
    }
    ambiguous = hub_cli("search", "trivia questions")
    assert ambiguous.exit_code == 1
    assert ambiguous.stderr == (
        f"error: give --base-model: the hub has experts of {', '.join(sorted(['other/base', TINY_BASE_MODEL]))}\n"
    )
