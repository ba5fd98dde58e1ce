"""Small valid PEFT adapters as the bytes of their two files, and the upload metadata that goes
with them: what the registry tests, the fault tests and bench/load.py upload.

Written with safetensors directly (no model, no transformers import), so each upload stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save

DEFAULT_METADATA: dict[str, Any] = {
    "task_description": "Answer trivia questions in one short sentence.",
    "sample_inputs": ["Who wrote Hamlet?"],
    "tags": ["qa", "en"],
}


@dataclass(frozen=True)
class AdapterFiles:
    """The two files of a PEFT adapter folder, as bytes."""

    config: bytes
    weights: bytes

    @classmethod
    def of(cls, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> AdapterFiles:
        contiguous = {name: tensor.contiguous() for name, tensor in tensors.items()}
        return cls(json.dumps(config).encode(), save(contiguous))


def lora_config(**overrides: Any) -> dict[str, Any]:
    """A LoRA adapter_config.json as peft writes it (the keys the hub indexes)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "tiny/llama",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj"],
        **overrides,
    }


def lora_tensors(
    *, seed: int = 0, rank: int = 4, width: int = 16, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Random LoRA A/B pairs for q_proj and v_proj of two layers."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(2):
        for module in ("q_proj", "v_proj"):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, width, generator=generator)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(width, rank, generator=generator)
    return {name: tensor.to(dtype) for name, tensor in tensors.items()}


def lora_adapter(*, seed: int = 0, **config: Any) -> AdapterFiles:
    """A small valid LoRA adapter; different seeds give different content (different blobs)."""
    return AdapterFiles.of(lora_config(**config), lora_tensors(seed=seed))


def ia3_adapter(*, seed: int = 0, **config: Any) -> AdapterFiles:
    """A small valid IA3 adapter (k_proj scaling vectors of two layers) of tiny/llama."""
    config = {
        "peft_type": "IA3",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "tiny/llama",
        "target_modules": ["k_proj"],
        **config,
    }
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        f"base_model.model.model.layers.{layer}.self_attn.k_proj.ia3_l": 1
        + 0.1 * torch.randn(16, 1, generator=generator)
        for layer in range(2)
    }
    return AdapterFiles.of(config, tensors)
