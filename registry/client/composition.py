"""Compose experts from the hub on a local base model: the glue between HubClient and
compeft_core's LoraHub search. Imports peft and transformers (seconds), so the CLI imports this
module only in the commands that need it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from compeft_core.compose import LoraComposer, Mode
from compeft_core.lora_expert import LoraExpert
from compeft_core.lorahub import CompositionResult, Loss, StepCallback, lorahub_search
from registry.client.hub import HubClient

RECORD_NAME = "composition.json"


class Shot(BaseModel):
    """One line of a shots file."""

    model_config = ConfigDict(extra="forbid")

    input: str
    output: str


@dataclass(frozen=True)
class Shots:
    """Few-shot examples: prompts and the answers the composed model should give."""

    inputs: list[str]
    outputs: list[str]

    @classmethod
    def read_jsonl(cls, path: Path) -> Shots:
        """One JSON object per line, `{"input": "...", "output": "..."}`; blank lines skipped.

        Raises ValueError naming the line of the first bad row.
        """
        shots = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    shots.append(Shot.model_validate_json(line))
                except ValidationError as exc:
                    raise ValueError(
                        f'{path}:{number}: expected {{"input": "...", "output": "..."}}: {exc}'
                    ) from exc
        if not shots:
            raise ValueError(f"{path}: no examples")
        return cls([shot.input for shot in shots], [shot.output for shot in shots])


@dataclass(frozen=True)
class LocalBaseModel:
    """A local base model ready for composition."""

    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    seq2seq: bool


def load_base_model(path: Path) -> LocalBaseModel:
    """A transformers folder, or a .gguf file (de-quantized to float32 by transformers), read from
    disk only.

    Encoder-decoder configs load as seq2seq models, everything else as causal LMs.
    """
    folder, options = (
        (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" else (path, {})
    )
    config = AutoConfig.from_pretrained(folder, **options)
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    model_class = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    model = model_class.from_pretrained(folder, config=config, dtype=torch.float32, **options)
    return LocalBaseModel(tokenizer, model.eval(), seq2seq)


def load_lora_experts(
    client: HubClient, experts: Sequence[str], alpha: float | None = None
) -> list[LoraExpert]:
    """Decompressed LoRA experts, each named `owner/name@<revision number>`, so a composition
    records exactly which revisions it used; float32, within the client's decompression limit."""
    loaded = []
    for expert in experts:
        revision, compressed = client.fetch(expert, dtype=torch.float32)
        loaded.append(
            LoraExpert.from_compressed(
                f"{revision.id}@{revision.revision}",
                compressed,
                revision.exported_config(),
                alpha=alpha,
                dtype=torch.float32,
            )
        )
    return loaded


def compose_from_hub(
    client: HubClient,
    experts: Sequence[str],
    model: torch.nn.Module,
    loss: Loss,
    *,
    mode: Mode = "lorahub",
    budget: int = 40,
    optimizer: str = "NGOpt",
    seed: int = 42,
    on_step: StepCallback | None = None,
) -> CompositionResult:
    """Download, decompress and LoraHub-compose `experts` on `model` (wrapped in place).

    `loss` is usually a `compeft_core.fewshot.FewShotLoss`. The result's weights are keyed by
    the pinned names of `load_lora_experts`.
    """
    composer = LoraComposer(model, load_lora_experts(client, experts), mode=mode)
    return lorahub_search(
        composer, loss, budget=budget, optimizer=optimizer, seed=seed, on_step=on_step
    )


def save_composition(result: CompositionResult, folder: Path, **provenance: Any) -> Path:
    """Write the peft folder plus `composition.json`: weights, losses, the optimizer nevergrad
    chose and its version, and whatever `provenance` adds (query, base model...)."""
    result.adapter.save(folder)
    search = result.search
    record = {
        **provenance,
        "mode": result.mode,
        "weights": result.weights,
        "loss_before": result.loss_before,
        "loss_after": result.loss_after,
        "optimizer_requested": search.optimizer_requested,
        "optimizer_chosen": search.optimizer_chosen,
        "nevergrad_version": search.nevergrad_version,
        "budget": search.budget,
        "seed": search.seed,
    }
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return folder
