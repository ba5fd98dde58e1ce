"""Fixed-weight merging of LoRA experts in product space: of the updates ΔW_i = s_i B_i A_i.

`merge.merge_lora_experts` merges A's with A's and B's with B's, which has cross terms. Here the
merged update is built from the products themselves (s_i: peft's scaling, lora_alpha / r, or
lora_alpha / sqrt(r) with rsLoRA):
- `"concat"`: exactly sum_i w_i ΔW_i, as one adapter of rank sum_i r_i: `compose(mode="cat")`.
- `"svd"`: that sum truncated to rank r, the best rank-r approximation (Eckart-Young), computed
  from the concatenated factors (QR of each, SVD of the R x R core) without the out x in matrix.
- `"ties"`: TIES (`merge.ties_merge`) of the dense ΔW_i, module by module, truncated to rank r
  by a dense SVD.

Every result carries its scaling in its factors: its config is `compose.unit_scaling_config`
of the first expert's (lora_alpha = r, so peft's scaling is 1), and peft applies exactly B @ A.
The truncated factors are in the balanced gauge of `lora_gauge`: B = U√S, A = √S Vᵀ, so
BᵀB = AAᵀ = S, with the same sign convention (the largest-magnitude entry of each row of A is
positive). They are computed in float64 and returned in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal, get_args

import torch

from compeft_core.compose import compose, unit_scaling_config
from compeft_core.errors import CompositionError
from compeft_core.lora_expert import ComposedAdapter, LoraExpert, lora_key
from compeft_core.merge import SignMethod, ties_merge

ProductMethod = Literal["concat", "svd", "ties"]
PRODUCT_METHODS: tuple[ProductMethod, ...] = get_args(ProductMethod)


def merge_lora_products(
    experts: Sequence[LoraExpert],
    weights: Sequence[float],
    method: ProductMethod = "svd",
    rank: int | None = None,
    density: float = 0.2,
    sign_method: SignMethod = "total",
) -> ComposedAdapter:
    """One adapter whose update at every module is the merge of the experts' w_i ΔW_i.

    Needs the same modules (and layer shapes) in every expert; ranks and scalings may differ
    (concat and svd go through `compose`, which also wants unique expert names).
    `rank` (svd, ties; default: the first expert's r) is the result's r whatever the modules:
    components a module does not have (beyond the concatenated rank, or beyond min(out, in))
    are zero, so a rank at least that large keeps the sum (or the TIES result) exactly.
    `density` and `sign_method` are TIES's (see `merge.ties_merge`).
    """
    experts = list(experts)
    if method not in PRODUCT_METHODS:
        raise CompositionError(f"method must be one of {PRODUCT_METHODS}, got {method!r}")
    _check_mergeable(experts, weights)
    if method == "concat":
        if rank is not None:
            raise CompositionError(
                "rank applies to 'svd' and 'ties'; 'concat' keeps the sum of the experts' ranks"
            )
        return _in_float32(_exact_sum(experts, weights))
    rank = experts[0].lora_config.r if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise CompositionError(f"rank must be an integer >= 1, got {rank!r}")
    if method == "svd":
        factors = _truncated_sum(_exact_sum(experts, weights), rank)
    else:
        factors = _truncated_ties(experts, weights, rank, density, sign_method)
    return ComposedAdapter(
        unit_scaling_config(experts[0].config, list(experts[0].modules), rank), factors
    )


def _check_mergeable(experts: list[LoraExpert], weights: Sequence[float]) -> None:
    """Product merging sums per module: every expert must adapt the same layers, one weight each.

    Non-LoRA tensors are refused by `LoraExpert.modules`, which names them.
    """
    if not experts:
        raise CompositionError("no experts given")
    if len(weights) != len(experts):
        raise CompositionError(
            f"need one weight per expert: got {len(experts)} experts, {len(weights)} weights"
        )
    first = experts[0]
    layers = {path: (m.b.shape[0], m.a.shape[1]) for path, m in first.modules.items()}
    for expert in experts[1:]:
        other = {path: (m.b.shape[0], m.a.shape[1]) for path, m in expert.modules.items()}
        if other != layers:
            path = next(
                p for p in sorted(layers.keys() | other.keys()) if layers.get(p) != other.get(p)
            )
            raise CompositionError(
                f"experts {first.name!r} and {expert.name!r} have different LoRA modules "
                f"({path}: (out, in) {layers.get(path)} vs {other.get(path)}); merging products "
                "needs the same modules in every expert"
            )


def _exact_sum(experts: list[LoraExpert], weights: Sequence[float]) -> ComposedAdapter:
    """sum_i w_i ΔW_i as the concatenated factors of `compose(mode="cat")`, in float64."""
    in_float64 = [
        replace(e, tensors={k: v.to(torch.float64) for k, v in e.tensors.items()}) for e in experts
    ]
    return compose(in_float64, weights, mode="cat")


def _in_float32(adapter: ComposedAdapter) -> ComposedAdapter:
    return ComposedAdapter(
        adapter.config, {k: v.to(torch.float32) for k, v in adapter.tensors.items()}
    )


def _truncated_sum(exact: ComposedAdapter, rank: int) -> dict[str, torch.Tensor]:
    """Top-`rank` SVD of each module's B A from B = Q_B R_B and Aᵀ = Q_A R_A: the SVD of the
    small core R_B R_Aᵀ, mapped back by Q_B and Q_A, is the product's."""
    factors = {}
    for path in exact.config["target_modules"]:
        a, b = exact.tensors[lora_key(path, "A")], exact.tensors[lora_key(path, "B")]
        q_b, r_b = torch.linalg.qr(b)
        q_a, r_a = torch.linalg.qr(a.T)
        u, s, vt = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
        factors.update(_balanced_top(path, q_b @ u, s, vt @ q_a.T, rank))
    return factors


def _truncated_ties(
    experts: list[LoraExpert],
    weights: Sequence[float],
    rank: int,
    density: float,
    sign_method: SignMethod,
) -> dict[str, torch.Tensor]:
    """TIES of the dense products (float32, as `ties_merge` computes), then a dense SVD.

    One module at a time: every expert's dense products at once would not fit in memory for a
    library of all-linear-layer experts (tens of GB)."""
    modules = [e.modules for e in experts]
    factors = {}
    for path in modules[0]:
        products = [
            {path: m[path].scaling * (m[path].b.to(torch.float64) @ m[path].a.to(torch.float64))}
            for m in modules
        ]
        merged = ties_merge(products, weights, density, sign_method)[path]
        u, s, vt = torch.linalg.svd(merged.to(torch.float64), full_matrices=False)
        factors.update(_balanced_top(path, u, s, vt, rank))
    return factors


def _balanced_top(
    path: str, u: torch.Tensor, s: torch.Tensor, vt: torch.Tensor, rank: int
) -> dict[str, torch.Tensor]:
    """A = √S Vᵀ and B = U√S of the top `rank` components (zero-padded), float32, sign-fixed."""
    kept = min(rank, s.numel())
    half = s[:kept].sqrt()
    a = torch.zeros(rank, vt.shape[1], dtype=torch.float64)
    b = torch.zeros(u.shape[0], rank, dtype=torch.float64)
    a[:kept] = half[:, None] * vt[:kept]
    b[:, :kept] = u[:, :kept] * half
    largest = a.gather(1, a.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    flip = torch.where(largest < 0, -1.0, 1.0).to(torch.float64)
    return {
        lora_key(path, "A"): (a * flip[:, None]).to(torch.float32),
        lora_key(path, "B"): (b * flip).to(torch.float32),
    }
