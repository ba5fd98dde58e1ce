"""Fixed-weight merging of decompressed experts: task arithmetic and TIES, key by key.

The functions take any task-vector dicts (name -> tensor, same names and shapes in every expert)
and merge each name on its own, with peft's merge_utils doing the arithmetic. Given LoRA state
dicts they merge the A's and the B's separately: that is LoraHub-like, not exact, since the merged
update (sum_i w_i B_i)(sum_i w_i A_i) has cross terms. For the exact sum_i w_i B_i A_i use
`compose(..., mode="cat")`, or merge the dense updates B_i A_i * scaling_i as task vectors.
`product_merge.merge_lora_products` does either, truncated to a rank by SVD if asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from peft.utils import merge_utils

from compeft_core.errors import CompositionError
from compeft_core.lora_expert import ComposedAdapter, LoraExpert, in_first_expert_scaling

SignMethod = Literal["total", "frequency"]
MergeMethod = Literal["task_arithmetic", "ties"]


def _aligned(
    task_vectors: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> dict[str, list[torch.Tensor]]:
    """Per name, the float32 tensors of every expert; refuses differing names or shapes."""
    if not task_vectors or len(weights) != len(task_vectors):
        raise CompositionError(
            f"need one weight per task vector and at least one task vector; "
            f"got {len(task_vectors)} task vectors, {len(weights)} weights"
        )
    names = task_vectors[0].keys()
    for index, vectors in enumerate(task_vectors[1:], start=1):
        if vectors.keys() != names:
            missing = sorted(names ^ vectors.keys())[:3]
            raise CompositionError(
                f"task vector {index} has other tensors than task vector 0 "
                f"(e.g. {missing}): different target modules"
            )
        for name in names:
            if vectors[name].shape != task_vectors[0][name].shape:
                raise CompositionError(
                    f"{name}: shape {tuple(vectors[name].shape)} in task vector {index}, "
                    f"{tuple(task_vectors[0][name].shape)} in task vector 0 (different ranks?); "
                    "LoRA experts of different ranks compose exactly with compose(mode='cat')"
                )
    return {name: [v[name].to(torch.float32) for v in task_vectors] for name in names}


def task_arithmetic(
    task_vectors: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """sum_i weights[i] * task_vectors[i], per name, in float32."""
    factors = torch.tensor(list(weights), dtype=torch.float32)
    return {
        name: merge_utils.task_arithmetic(tensors, factors)
        for name, tensors in _aligned(task_vectors, weights).items()
    }


def ties_merge(
    task_vectors: Sequence[Mapping[str, torch.Tensor]],
    weights: Sequence[float],
    density: float = 0.2,
    sign_method: SignMethod = "total",
) -> dict[str, torch.Tensor]:
    """TIES per name, in float32: trim, elect sign, disjoint mean.

    Each task vector keeps its floor(density * n) largest-magnitude entries of that tensor; the
    elected sign of an entry is the sign of the sum of the trimmed values ("total"; "frequency":
    of the count of signs), ties going to +; the result is the mean of weights[i] * value over the
    task vectors whose trimmed value has the elected sign (0 where none has).
    """
    if not 0 < density <= 1:
        raise CompositionError(f"density must be in (0, 1], got {density!r}")
    factors = torch.tensor(list(weights), dtype=torch.float32)
    return {
        name: merge_utils.ties(tensors, factors, density, sign_method)
        for name, tensors in _aligned(task_vectors, weights).items()
    }


def merge_lora_experts(
    experts: Sequence[LoraExpert],
    weights: Sequence[float],
    method: MergeMethod = "ties",
    density: float = 0.2,
    sign_method: SignMethod = "total",
) -> ComposedAdapter:
    """Merge LoRA experts A's with A's and B's with B's into one adapter of the first's config.

    Experts whose lora_alpha differs from the first's are rescaled first (see
    `in_first_expert_scaling`), so each keeps its own strength. Needs equal ranks and modules.
    """
    experts = list(experts)
    tensors = in_first_expert_scaling(experts)
    if method == "task_arithmetic":
        merged = task_arithmetic(tensors, weights)
    elif method == "ties":
        merged = ties_merge(tensors, weights, density, sign_method)
    else:
        raise CompositionError(f"method must be 'task_arithmetic' or 'ties', got {method!r}")
    return ComposedAdapter(dict(experts[0].config), merged)
