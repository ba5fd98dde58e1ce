"""LoRA experts as composition reads them: per-module (A, B, scaling), validated once.

An expert is its adapter_config.json (as uploaded) and its state dict with the keys peft saves,
`base_model.model.<module path>.lora_A.weight` (r, in) and `...lora_B.weight` (out, r). Only plain
LoRA on linear layers is composable; variants whose forward is not `x @ (scaling * B A).T`
(DoRA, aLoRA, Arrow, ...) are refused with a CompositionError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, PeftConfig
from peft.utils.other import get_pattern_key

from compeft_core.errors import CompositionError
from compeft_core.expert import CompressedExpert
from compeft_core.peft_io import PeftAdapter, write_adapter_folder

SAVED_PREFIX = "base_model.model."
_LORA_KEY = re.compile(rf"^{re.escape(SAVED_PREFIX)}(?P<path>.+)\.lora_(?P<half>[AB])\.weight$")
_UNSUPPORTED_OPTIONS = (
    "use_dora",
    "alora_invocation_tokens",
    "arrow_config",
    "target_parameters",
    "layer_replication",
)


def lora_key(module_path: str, half: str) -> str:
    """The state-dict key peft saves for the `half` ("A" or "B") of the LoRA at `module_path`."""
    return f"{SAVED_PREFIX}{module_path}.lora_{half}.weight"


@dataclass(frozen=True)
class LoraModule:
    """One adapted linear layer: delta W = scaling * b @ a."""

    a: torch.Tensor
    b: torch.Tensor
    scaling: float

    @property
    def rank(self) -> int:
        """Rank of this module's update (rows of A)."""
        return self.a.shape[0]


@dataclass(frozen=True, eq=False)
class LoraExpert:
    """A named LoRA adapter: its config (as uploaded) and its peft state dict.

    `alpha` is the single ComPEFT alpha its tensors were decoded with, when there is one; it lets an
    alpha search report absolute alphas that `CompressedExpert.decompress(alpha=...)` reproduces.
    """

    name: str
    config: Mapping[str, Any]
    tensors: Mapping[str, torch.Tensor]
    alpha: float | None = None

    @classmethod
    def from_adapter(cls, name: str, adapter: PeftAdapter) -> LoraExpert:
        """An expert from a parsed PEFT folder (`read_adapter_folder`)."""
        return cls(name, adapter.config, adapter.tensors)

    @classmethod
    def from_compressed(
        cls,
        name: str,
        expert: CompressedExpert,
        config: Mapping[str, Any],
        alpha: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> LoraExpert:
        """Decompress a ComPEFT expert; `alpha=None` uses the stored per-tensor default alphas."""
        defaults = np.unique(expert.alpha)
        used = alpha if alpha is not None else (float(defaults[0]) if defaults.size == 1 else None)
        return cls(name, config, expert.decompress(alpha=alpha, dtype=dtype), used)

    @cached_property
    def lora_config(self) -> LoraConfig:
        """The config parsed by peft (defaults filled in); refuses non-LoRA and LoRA variants."""
        peft_type = self.config.get("peft_type")
        if peft_type != "LORA":
            raise CompositionError(
                f"expert {self.name!r}: peft_type {peft_type!r} cannot be composed; only LORA"
            )
        used = [option for option in _UNSUPPORTED_OPTIONS if self.config.get(option)]
        if used:
            raise CompositionError(
                f"expert {self.name!r}: LoRA variants ({', '.join(used)}) "
                "cannot be composed; only plain LoRA"
            )
        try:
            return PeftConfig.from_peft_type(**self.config)
        except (TypeError, ValueError) as exc:
            raise CompositionError(f"expert {self.name!r}: invalid LoRA config: {exc}") from exc

    @cached_property
    def modules(self) -> dict[str, LoraModule]:
        """Module path -> LoraModule, sorted by path, with peft's scaling for that module."""
        config = self.lora_config
        halves: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in self.tensors.items():
            match = _LORA_KEY.match(key)
            if match is None:
                raise CompositionError(
                    f"expert {self.name!r}: {key} is not a LoRA A/B weight of a "
                    "linear layer; only those can be composed"
                )
            halves.setdefault(match["path"], {})[match["half"]] = tensor
        if not halves:
            raise CompositionError(f"expert {self.name!r} has no LoRA weights")
        modules = {}
        for path in sorted(halves):
            a, b = halves[path].get("A"), halves[path].get("B")
            if a is None or b is None or a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
                raise CompositionError(
                    f"expert {self.name!r}: {path} has no valid lora_A/lora_B "
                    "pair (shapes (r, in) and (out, r))"
                )
            modules[path] = LoraModule(a, b, _scaling(config, path, a.shape[0]))
        return modules


def _scaling(config: LoraConfig, module_path: str, rank: int) -> float:
    """peft's scaling of a module: lora_alpha (or alpha_pattern's) / r, or / sqrt(r) (rsLoRA)."""
    alpha_key = get_pattern_key(config.alpha_pattern.keys(), module_path)
    alpha = config.alpha_pattern.get(alpha_key, config.lora_alpha)
    scaling = alpha / math.sqrt(rank) if config.use_rslora else alpha / rank
    if not scaling > 0:
        raise CompositionError(f"{module_path}: LoRA scaling must be positive, got {scaling}")
    return scaling


@dataclass(frozen=True)
class ComposedAdapter:
    """A composed or merged LoRA adapter: what `write_adapter_folder` needs."""

    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def save(self, folder: Path) -> Path:
        """Write a folder that `peft.PeftModel.from_pretrained(base_model, folder)` loads."""
        return write_adapter_folder(folder, self.config, self.tensors)


def _check_same_layout(experts: list[LoraExpert]) -> None:
    """Summing A's and B's needs the same modules with the same shapes in every expert."""
    if not experts:
        raise CompositionError("no experts given")
    first = experts[0]
    shapes = {path: (m.a.shape, m.b.shape) for path, m in first.modules.items()}
    for expert in experts[1:]:
        other = {path: (m.a.shape, m.b.shape) for path, m in expert.modules.items()}
        if other != shapes:
            detail = next(
                (
                    f"{path}: {shapes.get(path)} vs {other.get(path)}"
                    for path in sorted(shapes.keys() | other.keys())
                    if shapes.get(path) != other.get(path)
                ),
            )
            raise CompositionError(
                f"experts {first.name!r} and {expert.name!r} differ in rank or target modules "
                f"({detail}); summing A's and B's separately needs identical shapes. "
                "Use mode='cat', which composes any ranks and modules exactly"
            )


def in_first_expert_scaling(experts: list[LoraExpert]) -> list[dict[str, torch.Tensor]]:
    """Each expert's state dict, rescaled so that the first expert's config applies to all.

    A and B of expert i at module m are both multiplied by sqrt(s_i(m) / s_0(m)), so each expert
    alone still produces its own update; when all scalings are equal (the LoraHub setting) the
    tensors are returned unchanged. Raises CompositionError unless all shapes agree.
    """
    _check_same_layout(experts)
    reference = experts[0].modules
    rescaled = []
    for expert in experts:
        tensors = {}
        for path, module in expert.modules.items():
            factor = math.sqrt(module.scaling / reference[path].scaling)
            tensors[lora_key(path, "A")] = module.a if factor == 1 else module.a * factor
            tensors[lora_key(path, "B")] = module.b if factor == 1 else module.b * factor
        rescaled.append(tensors)
    return rescaled
