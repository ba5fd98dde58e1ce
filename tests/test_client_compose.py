"""Composition end to end: experts trained for a few steps are uploaded to a hub served over
loopback HTTP, retrieved, pulled, decompressed and composed on a few examples, and the written
adapter lowers the few-shot loss of the base model.

The fast test uses the toy experts of tests/fixtures/toy_experts.py on a tiny LLaMA, through the
`compeft-hub compose` command; the slow one uses SmolLM2-135M through the SDK.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import nevergrad as ng
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from compeft_core.fewshot import FewShotLoss
from registry.client import HubClient
from registry.client.composition import compose_from_hub, save_composition
from tests.fixtures.live_hub import LiveHub, RunCli
from tests.fixtures.toy_experts import (
    TASKS,
    TOY_BASE_MODEL,
    as_text,
    examples,
    llama_base,
    toy_tokenizer,
    train_expert,
)

TOY_DESCRIPTIONS = {
    "copy": "Repeat the input tokens unchanged.",
    "shift": "Shift every input token up by forty.",
    "reverse_shift": "Reverse the order of the tokens and shift each up by eighty.",
}


@pytest.fixture(scope="module")
def toy_expert_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One peft folder per toy task, trained for 40 steps on the tiny LLaMA."""
    folder = tmp_path_factory.mktemp("toy-experts")
    for task in TASKS:
        train_expert(folder, task, seq2seq=False)
    return {task: folder / task for task in TASKS}


@pytest.fixture(scope="module")
def toy_model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The experts' base model and a tokenizer for its toy words, as `--model` reads them."""
    folder = tmp_path_factory.mktemp("toy-llama")
    llama_base().save_pretrained(folder)
    toy_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def toy_experts_on_hub(hub_client: HubClient, toy_expert_folders: dict[str, Path]) -> None:
    for task, folder in toy_expert_folders.items():
        prompts, _ = examples(task, 3, seed=500)
        hub_client.upload(
            folder,
            f"alice/{task}",
            description=TOY_DESCRIPTIONS[task],
            samples=[as_text(prompt) for prompt in prompts],
            density=0.3,
        )


def write_shots(path: Path, task: str) -> FewShotLoss:
    """Five examples of `task` as a shots file; the same examples as a loss on token ids."""
    prompts, answers = examples(task, 5, seed=7)
    lines = [
        json.dumps({"input": as_text(p), "output": as_text(a)})
        for p, a in zip(prompts, answers, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return FewShotLoss(prompts, answers, seq2seq=False)


@pytest.mark.usefixtures("toy_experts_on_hub")
def test_compose_command_retrieves_experts_and_lowers_the_few_shot_loss(
    hub_cli: RunCli, toy_model_folder: Path, tmp_path: Path
) -> None:
    shots = tmp_path / "shots.jsonl"
    loss = write_shots(shots, "reverse_shift")
    out = tmp_path / "composed"
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = hub_cli(
            "compose",
            "--query",
            "Reverse the tokens, then shift them up",
            "--examples",
            shots,
            "--base-model",
            TOY_BASE_MODEL,
            "--model",
            toy_model_folder,
            "-k",
            "3",
            "--steps",
            "30",
            "--seed",
            "0",
            "--out",
            out,
        )
    assert result.exit_code == 0, result.output
    # Third-party warnings that say nothing to a user of the command are not shown.
    messages = [str(warning.message) for warning in shown]
    for noise in ("is_gradient_checkpointing", "Could not find a config file", "RHOEND"):
        assert not [message for message in messages if noise in message]

    record = json.loads((out / "composition.json").read_text())
    weights = record["weights"]
    assert (
        sorted(weights) == sorted(f"alice/{task}@1" for task in TASKS) == sorted(record["scores"])
    )
    assert max(weights, key=lambda name: abs(weights[name])) == "alice/reverse_shift@1"
    assert record["loss_after"] < record["loss_before"] - 0.5
    assert record["optimizer_requested"] == "NGOpt"
    assert record["optimizer_chosen"] in ng.optimizers.registry
    assert record["nevergrad_version"] == ng.__version__
    for text in ("alice/reverse_shift@1", record["optimizer_chosen"], ng.__version__):
        assert text in result.stdout
    # stderr is no terminal here, so no bar shows: plain lines say what is happening.
    progress = result.stderr.splitlines()
    assert progress[:2] == [
        "retrieved 3 experts",
        f"loading the base model from {toy_model_folder}",
    ]
    steps = [line for line in progress if line.startswith("composing: step ")]
    assert [line.split(",")[0] for line in steps] == [
        f"composing: step {step}/30" for step in range(3, 31, 3)
    ]
    losses = [[float(part.split()[-1]) for part in line.split(",")[1:]] for line in steps]
    bests = [best for _, best in losses]
    assert bests == sorted(bests, reverse=True) and all(best <= loss for loss, best in losses)

    composed = PeftModel.from_pretrained(llama_base(), out)
    assert loss(composed) == pytest.approx(record["loss_after"], abs=1e-4)
    assert loss(llama_base()) == pytest.approx(record["loss_before"], abs=1e-4)


@pytest.mark.usefixtures("toy_experts_on_hub")
def test_compose_command_takes_named_experts_without_searching(
    live_hub: LiveHub, hub_cli: RunCli, toy_model_folder: Path, tmp_path: Path
) -> None:
    shots = tmp_path / "shots.jsonl"
    write_shots(shots, "shift")
    result = hub_cli(
        "compose",
        "--expert",
        "alice/shift@1",
        "--expert",
        "alice/copy",
        "--mode",
        "cat",
        "--examples",
        shots,
        "--base-model",
        TOY_BASE_MODEL,
        "--model",
        toy_model_folder,
        "--steps",
        "4",
        "--out",
        tmp_path / "cat",
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cat" / "composition.json").read_text())
    assert list(record["weights"]) == ["alice/shift@1", "alice/copy@1"]
    assert record["mode"] == "cat" and record["scores"] == {}
    assert not any(request.path.endswith("/search") for request in live_hub.recorder.requests)


SMOL_TASKS = {
    "capitals": [("France", "PARIS"), ("Germany", "BERLIN"), ("Italy", "ROME"), ("Japan", "TOKYO")],
    "currencies": [("Japan", "YEN"), ("India", "RUPEE"), ("Mexico", "PESO"), ("Britain", "POUND")],
}
SMOL_HELD_OUT = [("Canada", "OTTAWA"), ("Kenya", "NAIROBI"), ("Norway", "OSLO")]


def smol_prompt(task: str, country: str) -> str:
    noun = "capital" if task == "capitals" else "currency"
    return f"Q: What is the {noun} of {country}? Answer in capitals.\nA:"


def train_smol_expert(tokenizer, base, task: str, folder: Path) -> Path:
    """Four AdamW steps of a rank-8 LoRA on q_proj and v_proj: enough to move the loss."""
    model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    texts = [
        f"{smol_prompt(task, country)} {answer}{tokenizer.eos_token}"
        for country, answer in SMOL_TASKS[task]
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(4):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder / task)
    return folder / task


@pytest.mark.slow
def test_smollm2_experts_are_found_and_composed_through_the_hub(
    smollm2, hub_client: HubClient, tmp_path: Path
) -> None:
    tokenizer, base = smollm2
    for task, noun in (("capitals", "capital city"), ("currencies", "currency")):
        folder = train_smol_expert(tokenizer, base, task, tmp_path)
        hub_client.upload(
            folder,
            f"alice/{task}",
            density=0.3,
            description=f"Name the {noun} of a country, in capital letters.",
        )
    inputs = [smol_prompt("capitals", country) for country, _ in SMOL_HELD_OUT]
    loss = FewShotLoss.from_text(
        tokenizer, inputs, [f" {answer}" for _, answer in SMOL_HELD_OUT], seq2seq=False
    )

    base_model = hub_client.info("alice/capitals").base_model
    assert base_model is not None
    hits = hub_client.search(
        "What is the capital city of this country?", inputs, base_model=base_model, k=2
    )
    assert [hit.id for hit in hits] == ["alice/capitals", "alice/currencies"]
    result = compose_from_hub(
        hub_client,
        [f"{hit.id}@{hit.revision.revision}" for hit in hits],
        copy.deepcopy(base),
        loss,
        budget=6,
        seed=0,
    )
    assert result.loss_after < result.loss_before  # 7.8 -> 5.9 when written
    assert result.loss_before == pytest.approx(loss(base), rel=1e-5)

    folder = save_composition(result, tmp_path / "composed")
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()
    assert loss(reloaded) == pytest.approx(result.loss_after, rel=1e-4)
