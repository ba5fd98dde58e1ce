"""Task vectors: what fine-tuning changed, as a dict of tensors ready for `compress`.

- LoRA: A and B as they are. peft does not save A's random initialisation, so there is nothing
  to subtract (as in the ComPEFT authors' code).
- (IA)^3: the learned scaling vectors minus their initial value of one.
- Full fine-tune: fine-tuned minus base, read tensor by tensor from two safetensors files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from compeft_core.errors import AdapterFormatError
from compeft_core.peft_io import PeftAdapter


def lora_task_vector(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LoRA A/B weights are the task vector themselves."""
    return dict(tensors)


def ia3_task_vector(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(IA)^3 vectors relative to their initialisation of ones."""
    return {name: t - 1 for name, t in tensors.items()}


def ia3_from_task_vector(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `ia3_task_vector`: decompressed deltas back to scaling vectors."""
    return {name: t + 1 for name, t in tensors.items()}


def residual_task_vector(
    finetuned: str | Path, base: str | Path, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Fine-tuned minus base for every tensor of `finetuned` (files in safetensors format).

    Tensors are read one pair at a time, so peak memory is the result plus two tensors, never
    two whole models. Every fine-tuned tensor must exist in the base with the same shape.
    """
    residual: dict[str, torch.Tensor] = {}
    try:
        with (
            safe_open(str(finetuned), framework="pt") as tuned,
            safe_open(str(base), framework="pt") as original,
        ):
            base_names = set(original.keys())
            for name in tuned.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                if name not in base_names:
                    raise AdapterFormatError(
                        f"{name}: present in the fine-tuned model, not in base"
                    )
                after, before = tuned.get_tensor(name), original.get_tensor(name)
                if after.shape != before.shape:
                    raise AdapterFormatError(
                        f"{name}: shape {tuple(after.shape)} differs from base {tuple(before.shape)}"
                    )
                if after.is_floating_point():
                    residual[name] = after.to(dtype) - before.to(dtype)
    except AdapterFormatError:
        raise
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise AdapterFormatError(f"cannot read model weights: {exc}") from exc
    return residual


def adapter_task_vector(adapter: PeftAdapter) -> dict[str, torch.Tensor]:
    """The task vector of a parsed PEFT adapter, by its peft_type."""
    if adapter.peft_type == "IA3":
        return ia3_task_vector(adapter.tensors)
    return lora_task_vector(adapter.tensors)


def adapter_from_task_vector(
    peft_type: str, tensors: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Inverse of `adapter_task_vector`: adapter weights from (decompressed) task vectors."""
    if peft_type == "IA3":
        return ia3_from_task_vector(tensors)
    return lora_task_vector(tensors)
