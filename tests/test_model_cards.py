"""The adapter folder's README.md (its model card) is kept with the revision: answered by the API,
rendered on the expert page with raw HTML escaped, written back by `export`; the license and data
sets of its front matter (or of the upload's metadata) are filters of listing and search."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.adapter_files import DEFAULT_METADATA, lora_adapter
from tests.fixtures.live_hub import LiveHub, RunCli
from tests.fixtures.registry import Hub
from tests.test_client_cli import upload

pytestmark = pytest.mark.usefixtures("no_leftover_upload_files")

CARD = """---
license: Apache-2.0
datasets:
- squad
- abisee/cnn_dailymail
library_name: peft
---

# Trivia expert

<!-- Provide a quick summary of what the model is/does. -->
Answers trivia in **one** sentence. <script>alert("card")</script>

| split | accuracy |
|-------|----------|
| test  | 0.81     |

[click](javascript:alert(1)) and [the paper](https://arxiv.org/abs/2311.13171)
"""


def card_upload(hub: Hub, expert: str, card: str | bytes, **metadata: object):
    body = card.encode() if isinstance(card, str) else card
    return hub.upload(
        expert,
        lora_adapter(seed=len(expert)),
        token=hub.token(expert.split("/")[0]),
        metadata={**DEFAULT_METADATA, **metadata},
        extra_files={"README.md": body},
    )


def test_the_card_and_its_front_matter_are_kept(hub: Hub) -> None:
    created = card_upload(hub, "alice/trivia", CARD)
    assert (created.status_code, created.json()["warnings"]) == (201, [])
    detail = hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert detail["model_card"] == CARD
    assert (detail["license"], detail["datasets"]) == (
        "apache-2.0",
        ["abisee/cnn_dailymail", "squad"],
    )
    [listed] = hub.client.get("/api/v1/experts").json()["items"]
    assert (listed["latest"]["license"], listed["latest"]["datasets"]) == (
        "apache-2.0",
        ["abisee/cnn_dailymail", "squad"],
    )
    assert "model_card" not in listed["latest"]  # listings stay small


def test_the_uploads_metadata_wins_over_the_front_matter(hub: Hub) -> None:
    created = card_upload(hub, "alice/trivia", CARD, license="MIT", datasets=["trivia_qa"])
    assert created.status_code == 201
    detail = hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert (detail["license"], detail["datasets"]) == ("mit", ["trivia_qa"])


def test_an_upload_without_a_card_has_none(hub: Hub) -> None:
    hub.upload("alice/trivia", lora_adapter(), token=hub.token("alice"))
    detail = hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert (detail["model_card"], detail["license"], detail["datasets"]) == (None, None, [])


@pytest.mark.parametrize(
    ("front_matter", "said"),
    [
        (
            "license: Apache 2.0\n",
            "README.md front matter: license: Value error, license 'apache 2.0'",
        ),
        ("datasets: [a/b/c]\n", "README.md front matter: datasets.0: Value error, dataset 'a/b/c'"),
        ("license: [unclosed\n", "the README.md front matter is not YAML"),
    ],
)
def test_bad_front_matter_is_left_out_and_said(hub: Hub, front_matter: str, said: str) -> None:
    created = card_upload(hub, "alice/trivia", f"---\n{front_matter}---\n# Card\n")
    assert created.status_code == 201
    [warning] = created.json()["warnings"]
    assert warning.startswith(said), warning
    detail = hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert (detail["license"], detail["datasets"]) == (None, [])
    assert detail["model_card"].endswith("# Card\n")


@pytest.mark.parametrize(
    ("card", "status", "said"),
    [
        (b"\xff\xfe not utf-8", 400, "README.md is not UTF-8 text"),
        (b"# Card\x00", 400, "README.md holds control characters"),
        (b"#" * (256 * 1024 + 1), 413, "part 'README.md' exceeds 262144 bytes"),
    ],
)
def test_a_card_that_is_not_text_is_refused_and_nothing_is_stored(
    hub: Hub, card: bytes, status: int, said: str
) -> None:
    refused = card_upload(hub, "alice/trivia", card)
    assert refused.status_code == status
    assert said in refused.json()["detail"]
    assert hub.revision_count() == 0 and hub.blob_keys() == set()


def test_a_changed_card_is_a_new_revision(hub: Hub) -> None:
    assert card_upload(hub, "alice/trivia", CARD).status_code == 201
    assert card_upload(hub, "alice/trivia", CARD).status_code == 200  # identical
    again = card_upload(hub, "alice/trivia", CARD + "\nNew results.\n")
    assert (again.status_code, again.json()["revision"]) == (201, 2)


def test_listing_and_search_filter_on_license_and_dataset(hub: Hub) -> None:
    card_upload(hub, "alice/trivia", CARD)
    card_upload(hub, "bob/quiz", "# Quiz\n", license="mit", datasets=["trivia_qa"])
    hub.upload("carol/plain", lora_adapter(seed=9), token=hub.token("carol"))

    def listed(**params: str) -> list[str]:
        page = hub.client.get("/api/v1/experts", params=params)
        assert page.status_code == 200, page.text
        return [item["id"] for item in page.json()["items"]]

    def searched(**filters: str) -> list[str]:
        body = {"query": "trivia questions", "base_model": "tiny/llama", **filters}
        answer = hub.client.post("/api/v1/search", json=body)
        assert answer.status_code == 200, answer.text
        return sorted(hit["id"] for hit in answer.json()["results"])

    assert listed(license="Apache-2.0") == ["alice/trivia"]
    assert listed(dataset="SQuAD") == ["alice/trivia"]
    assert listed(license="mit", dataset="trivia_qa") == ["bob/quiz"]
    assert listed(license="gpl-3.0") == []
    assert searched() == ["alice/trivia", "bob/quiz", "carol/plain"]
    assert searched(license="mit") == ["bob/quiz"]
    assert searched(dataset="Abisee/CNN_DailyMail") == ["alice/trivia"]
    assert searched(license="mit", dataset="squad") == []


def test_the_expert_page_renders_the_card_with_html_escaped(hub: Hub) -> None:
    card_upload(hub, "alice/trivia", CARD)
    html = hub.client.get("/experts/alice/trivia").text
    assert "<h3>Trivia expert</h3>" in html and "<strong>one</strong>" in html  # under the h2
    assert "<th>accuracy</th>" in html  # tables, as model cards use them
    assert "&lt;script&gt;alert(&quot;card&quot;)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html and '<a href="https://arxiv.org/abs/2311.13171">' in html
    assert "library_name" not in html  # the front matter is shown as facts, not as text
    assert "Provide a quick summary" not in html  # HTML comments, as peft's template has
    assert 'License <span class="license">apache-2.0</span>' in html
    assert 'Trained on <span class="datasets">abisee/cnn_dailymail, squad</span>' in html


def test_peft_card_template_comments_are_not_shown(hub: Hub) -> None:
    card_upload(hub, "alice/trivia", "# Card\n<!-- Provide a quick summary -->\nText.\n")
    html = hub.client.get("/experts/alice/trivia").text
    assert "Provide a quick summary" not in html and "<p>Text.</p>" in html


def test_export_writes_the_card_back(
    live_hub: LiveHub, hub_cli: RunCli, peft_adapter_folders: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "with-card"
    shutil.copytree(peft_adapter_folders[0], folder)
    (folder / "README.md").write_text(CARD)
    upload(hub_cli, folder, "alice/qa", "--dataset", "trivia_qa")
    shown = hub_cli("info", "alice/qa").stdout
    assert "  license  apache-2.0\n" in shown and "  datasets  trivia_qa\n" in shown
    assert f"model card  README.md, {len(CARD)} chars" in shown
    exported = hub_cli("export", "alice/qa", tmp_path / "exported")
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "exported" / "README.md").read_text() == CARD
    bare = shutil.copytree(peft_adapter_folders[1], tmp_path / "bare-adapter")
    (bare / "README.md").unlink()  # peft's save_pretrained writes a card template
    upload(hub_cli, bare, "alice/bare")
    hub_cli("export", "alice/bare", tmp_path / "bare")
    assert not (tmp_path / "bare" / "README.md").exists()
    licensed = hub_cli("list", "--license", "Apache-2.0").stdout
    assert "alice/qa@1" in licensed and "alice/bare" not in licensed
    trained = hub_cli("search", "trivia questions", "--dataset", "trivia_qa")
    assert trained.exit_code == 0, trained.output
    assert "alice/qa@1" in trained.stdout and "alice/bare" not in trained.stdout
