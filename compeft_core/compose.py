"""Composition of LoRA experts with one weight per expert, with fixed weights or inside a model.

Two modes:
- `"lorahub"`: as LoraHub's reference code, A's and B's are weighted and summed separately,
  A = sum_i w_i A_i, B = sum_i w_i B_i, so the update (sum_i w_i B_i)(sum_i w_i A_i) has cross
  terms. All experts need the same modules and ranks; the first expert's config is the result's.
- `"cat"`: peft's "cat": A = concat_i A_i and B = concat_i w_i scaling_i B_i along the rank, with
  lora_alpha = r so peft's scaling is 1: the update is exactly sum_i w_i scaling_i B_i A_i.
  Any ranks and target modules compose; an expert without a module contributes zeros there.

Each expert may also be scaled as a whole (`scales`, both A and B): that is how a ComPEFT alpha
acts, since a blob decodes to alpha * sigma * ternary.

Both modes lay every composed A (and every composed B) out in one flat vector that is a single
tensor operation of the per-expert coefficients, so `LoraComposer.apply` costs two kernels however
many modules there are, and no model is rebuilt between steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import reduce
from math import prod
from typing import Any, Literal

import numpy as np
import torch
from peft import PeftConfig, PeftModel, get_peft_model

from compeft_core.errors import CompositionError
from compeft_core.lora_expert import (
    SAVED_PREFIX,
    ComposedAdapter,
    LoraExpert,
    in_first_expert_scaling,
    lora_key,
)

Mode = Literal["lorahub", "cat"]
MODES: tuple[Mode, ...] = ("lorahub", "cat")
ADAPTER_NAME = "default"
# The composed model must start as the plain base model and must not grow other trainable parts.
_BUILD_OVERRIDES = {
    "init_lora_weights": True,
    "inference_mode": True,
    "modules_to_save": None,
    "trainable_token_indices": None,
}


@dataclass(frozen=True)
class _Layout(ABC):
    """Where each composed LoRA weight lives in two flat vectors (all A's, then all B's)."""

    config: dict[str, Any]
    module_paths: tuple[str, ...]
    a_shapes: tuple[torch.Size, ...]
    b_shapes: tuple[torch.Size, ...]
    num_experts: int

    @abstractmethod
    def _factors(
        self, weights: torch.Tensor, scales: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-expert coefficients of the A's and of the B's."""

    @abstractmethod
    def write(
        self,
        a_factors: torch.Tensor,
        b_factors: torch.Tensor,
        flat_a: torch.Tensor,
        flat_b: torch.Tensor,
    ) -> None:
        """Write the composed A's and B's into the flat vectors, in place."""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the layout computes in."""
        return self._values().dtype

    @property
    def device(self) -> torch.device:
        """The device the layout's tensors are on."""
        return self._values().device

    def _values(self) -> torch.Tensor:
        return next(
            value for f in fields(self) if isinstance(value := getattr(self, f.name), torch.Tensor)
        )

    def coefficients(
        self, weights: Sequence[float], scales: Sequence[float] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked per-expert weights and whole-expert scales (1 by default) as A/B factors."""
        ones = [1.0] * self.num_experts
        return self._factors(
            self._per_expert("weights", weights),
            self._per_expert("scales", ones if scales is None else scales),
        )

    def _per_expert(self, label: str, values: Sequence[float]) -> torch.Tensor:
        vector = torch.tensor(np.array(values, dtype=np.float64)).reshape(-1)
        if vector.numel() != self.num_experts or not torch.isfinite(vector).all():
            raise CompositionError(
                f"{label} must be {self.num_experts} finite numbers, one per expert; got {values!r}"
            )
        return vector.to(self.device, self.dtype)

    def new_flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeroed flat vectors for all A's and all B's (zero means: the base model)."""
        sizes = [sum(prod(shape) for shape in shapes) for shapes in (self.a_shapes, self.b_shapes)]
        return tuple(torch.zeros(size, dtype=self.dtype, device=self.device) for size in sizes)

    def split(self, flat_a: torch.Tensor, flat_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of the flat vectors as a peft state dict (keys as peft saves them)."""
        tensors = {}
        for half, flat, shapes in (("A", flat_a, self.a_shapes), ("B", flat_b, self.b_shapes)):
            offset = 0
            for path, shape in zip(self.module_paths, shapes, strict=True):
                tensors[lora_key(path, half)] = flat[offset : offset + prod(shape)].view(shape)
                offset += prod(shape)
        return tensors

    def to(self, device: torch.device, dtype: torch.dtype) -> _Layout:
        """The same layout computing on `device` in `dtype` (index tensors keep their dtype)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device, dtype if value.is_floating_point() else None)
        return replace(self, **moved)


@dataclass(frozen=True)
class _SummedLayout(_Layout):
    """LoraHub: flat A = stacked A's (one column per expert) @ factors; likewise for B."""

    stacked_a: torch.Tensor
    stacked_b: torch.Tensor

    def _factors(self, weights, scales):
        return weights * scales, weights * scales

    def write(self, a_factors, b_factors, flat_a, flat_b):
        torch.mv(self.stacked_a, a_factors, out=flat_a)
        torch.mv(self.stacked_b, b_factors, out=flat_b)


@dataclass(frozen=True)
class _ConcatenatedLayout(_Layout):
    """peft "cat": rank slot s of every module belongs to expert `slot_owner[s]`.

    Every composed B is (out, total rank), so all B's together are one (sum of out, total) matrix
    whose columns are scaled; each composed A row (in values) is scaled as a whole.
    """

    values_a: torch.Tensor
    values_b: torch.Tensor
    slot_owner: torch.Tensor
    a_row_lengths: torch.Tensor

    def _factors(self, weights, scales):
        return scales, weights * scales

    def write(self, a_factors, b_factors, flat_a, flat_b):
        slots = self.slot_owner.numel()
        a_rows = a_factors[self.slot_owner].repeat(len(self.module_paths))
        torch.mul(
            self.values_a,
            a_rows.repeat_interleave(self.a_row_lengths, output_size=flat_a.numel()),
            out=flat_a,
        )
        torch.mul(
            self.values_b.view(-1, slots), b_factors[self.slot_owner], out=flat_b.view(-1, slots)
        )


def unit_scaling_config(
    config: Mapping[str, Any], module_paths: Sequence[str], rank: int
) -> dict[str, Any]:
    """`config` for a rank-`rank` adapter on `module_paths` whose factors carry their scaling.

    lora_alpha = r, no rsLoRA and no per-module patterns, so peft's scaling is 1 on every module
    and the update peft applies is B @ A itself.
    """
    return {
        **config,
        **_BUILD_OVERRIDES,
        "r": rank,
        "lora_alpha": rank,
        "target_modules": list(module_paths),
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_rslora": False,
        "layers_to_transform": None,
        "layers_pattern": None,
        "exclude_modules": None,
    }


def _compute_dtype(experts: Sequence[LoraExpert]) -> torch.dtype:
    """float32 at least, float64 when an expert comes in float64."""
    dtypes = (t.dtype for e in experts for t in e.tensors.values())
    return reduce(torch.promote_types, dtypes, torch.float32)


def _summed_layout(experts: list[LoraExpert]) -> _SummedLayout:
    rescaled = in_first_expert_scaling(experts)
    first = experts[0]
    paths = tuple(first.modules)
    dtype = _compute_dtype(experts)

    def stacked(half: str) -> torch.Tensor:
        return torch.stack(
            [
                torch.cat([t[lora_key(p, half)].reshape(-1).to(dtype) for p in paths])
                for t in rescaled
            ],
            dim=1,
        )

    return _SummedLayout(
        config={**first.config, **_BUILD_OVERRIDES},
        module_paths=paths,
        a_shapes=tuple(m.a.shape for m in first.modules.values()),
        b_shapes=tuple(m.b.shape for m in first.modules.values()),
        num_experts=len(experts),
        stacked_a=stacked("A"),
        stacked_b=stacked("B"),
    )


def _concatenated_layout(experts: list[LoraExpert]) -> _ConcatenatedLayout:
    """Expert i owns rank slots [offset_i, offset_i + width_i), width_i = its largest rank."""
    dtype = _compute_dtype(experts)
    widths = [max(m.rank for m in e.modules.values()) for e in experts]
    offsets = [sum(widths[:i]) for i in range(len(experts))]
    total = sum(widths)
    paths = tuple(sorted({path for e in experts for path in e.modules}))
    a_values, b_values, a_shapes, b_shapes = [], [], [], []
    for path in paths:
        present = [(i, e.modules[path]) for i, e in enumerate(experts) if path in e.modules]
        dims = {(m.b.shape[0], m.a.shape[1]) for _, m in present}
        if len(dims) > 1:
            raise CompositionError(
                f"{path}: experts disagree on the layer's shape (out, in) "
                f"{sorted(dims)}; were they trained on the same base model?"
            )
        ((out_features, in_features),) = dims
        a = torch.zeros(total, in_features, dtype=dtype)
        b = torch.zeros(out_features, total, dtype=dtype)
        for i, module in present:
            a[offsets[i] : offsets[i] + module.rank] = module.a
            b[:, offsets[i] : offsets[i] + module.rank] = module.b.to(dtype) * module.scaling
        a_values.append(a.reshape(-1))
        b_values.append(b.reshape(-1))
        a_shapes.append(a.shape)
        b_shapes.append(b.shape)
    return _ConcatenatedLayout(
        config=unit_scaling_config(experts[0].config, paths, total),
        module_paths=paths,
        a_shapes=tuple(a_shapes),
        b_shapes=tuple(b_shapes),
        num_experts=len(experts),
        values_a=torch.cat(a_values),
        values_b=torch.cat(b_values),
        slot_owner=torch.repeat_interleave(torch.arange(len(experts)), torch.tensor(widths)),
        a_row_lengths=torch.tensor([shape[1] for shape in a_shapes]).repeat_interleave(total),
    )


def _layout(experts: Sequence[LoraExpert], mode: Mode) -> _Layout:
    experts = list(experts)
    if not experts:
        raise CompositionError("no experts given")
    names = [e.name for e in experts]
    if len(set(names)) != len(names):
        raise CompositionError(f"expert names must be unique, got {names}")
    if mode == "lorahub":
        return _summed_layout(experts)
    if mode == "cat":
        return _concatenated_layout(experts)
    raise CompositionError(f"mode must be one of {MODES}, got {mode!r}")


def compose(
    experts: Sequence[LoraExpert],
    weights: Sequence[float],
    mode: Mode = "lorahub",
    scales: Sequence[float] | None = None,
) -> ComposedAdapter:
    """The composed adapter for fixed weights, without a model (see the module docstring).

    With mode="cat" the result's update at every module is exactly
    sum_i weights[i] * scales[i]**2 * scaling_i * B_i A_i.
    """
    layout = _layout(experts, mode)
    flat_a, flat_b = layout.new_flat()
    layout.write(*layout.coefficients(weights, scales), flat_a, flat_b)
    return ComposedAdapter(dict(layout.config), layout.split(flat_a, flat_b))


class LoraComposer:
    """A peft model built once around `model`, whose LoRA weights `apply` rewrites in place.

    The LoRA parameters of the model are re-pointed, once, to views of two flat vectors; `apply`
    writes the composition into those vectors (two tensor operations under no_grad), so the peft
    wrapper, its modules and its parameters (same objects, same ids) stay as built. `model` is
    wrapped in place (peft injects the LoRA layers into it); give it without adapters, on its final
    device and dtype (moving it afterwards would detach the LoRA weights from the flat vectors).
    """

    def __init__(
        self, model: torch.nn.Module, experts: Sequence[LoraExpert], mode: Mode = "lorahub"
    ) -> None:
        if isinstance(model, PeftModel):
            raise CompositionError("give the base model: this model already carries a peft adapter")
        layout = _layout(experts, mode)
        self.experts = tuple(experts)
        self.mode = mode
        peft_config = PeftConfig.from_peft_type(**layout.config)
        self.peft_model: PeftModel = get_peft_model(model, peft_config, adapter_name=ADAPTER_NAME)
        self.peft_model.eval()
        first = self._lora_weight(layout.module_paths[0], "A")
        self._layout = layout.to(first.device, first.dtype)
        self._flat_a, self._flat_b = self._layout.new_flat()
        for (key, view), param in zip(
            self._layout.split(self._flat_a, self._flat_b).items(),
            self._lora_parameters(),
            strict=True,
        ):
            if param.shape != view.shape:
                raise CompositionError(
                    f"{key}: the model's LoRA weight has shape "
                    f"{tuple(param.shape)}, the experts' {tuple(view.shape)}"
                )
            param.data = view

    @property
    def expert_names(self) -> tuple[str, ...]:
        """Expert names, in the order of the weights."""
        return tuple(e.name for e in self.experts)

    def apply(self, weights: Sequence[float], scales: Sequence[float] | None = None) -> None:
        """Make the model compute the composition with these per-expert weights (and scales)."""
        with torch.no_grad():
            self._layout.write(
                *self._layout.coefficients(weights, scales), self._flat_a, self._flat_b
            )

    def adapter(self) -> ComposedAdapter:
        """The composition the model holds now, as a peft config and state dict (CPU copies)."""
        tensors = self._layout.split(self._flat_a, self._flat_b)
        return ComposedAdapter(
            dict(self._layout.config),
            {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()},
        )

    def _lora_parameters(self) -> list[torch.nn.Parameter]:
        """The model's LoRA weights in the order of the layout's `split`."""
        return [
            self._lora_weight(path, half)
            for half in ("A", "B")
            for path in self._layout.module_paths
        ]

    def _lora_weight(self, module_path: str, half: str) -> torch.nn.Parameter:
        try:
            layers = getattr(
                self.peft_model.get_submodule(SAVED_PREFIX + module_path), f"lora_{half}"
            )
            return layers[ADAPTER_NAME].weight
        except (AttributeError, KeyError) as exc:
            raise CompositionError(
                f"{module_path}: the model has no LoRA layer there; do the "
                "experts belong to this base model?"
            ) from exc
