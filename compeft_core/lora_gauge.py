"""The LoRA gauge: which tensors pair up as B·A, and the balanced factorisation of each pair.

A LoRA module adds ΔW = B·A, and any invertible G gives the same product as (B G)(G⁻¹ A). After
a short training A is mostly its random initialisation, so ternarising A and B in the gauge they
were trained in keeps mostly noise. The balanced gauge is the SVD of the product truncated to
the rank: B' = U√S, A' = √S Vᵀ (same shapes, same product, still a peft adapter), in which the
large entries of both factors carry the product's main directions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FACTORISATIONS = ("as-trained", "balanced")
_HALF = re.compile(r"^(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")


@dataclass(frozen=True)
class LoraPair:
    """One LoRA module: the positions (in name order) of its A (r, in) and B (out, r) tensors."""

    module: str
    a: int
    b: int


def lora_pairs(names: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> list[LoraPair]:
    """The `<module>.lora_A.weight` / `<module>.lora_B.weight` pairs whose shapes multiply.

    Anything else (a lone half, a conv LoRA, (IA)^3 vectors, full residuals) is not a pair and
    keeps the per-tensor path.
    """
    halves: dict[str, dict[str, int]] = {}
    for index, name in enumerate(names):
        match = _HALF.match(name)
        if match is not None:
            halves.setdefault(match["module"], {})[match["half"]] = index
    pairs = []
    for module, found in sorted(halves.items()):
        if set(found) != {"A", "B"}:
            continue
        a_shape, b_shape = shapes[found["A"]], shapes[found["B"]]
        if len(a_shape) == 2 and len(b_shape) == 2 and a_shape[0] == b_shape[1]:
            pairs.append(LoraPair(module, found["A"], found["B"]))
    return pairs


def small_product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ right, an r x r result, in float64: computed in the inputs' precision (float32
    BLAS) unless that overflows (factors beyond about 1e19), then again from float64 copies."""
    product = (left @ right).astype(np.float64)
    if not np.isfinite(product).all() and left.dtype != np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            product = left.astype(np.float64) @ right.astype(np.float64)
    return product


def _root_and_inverse_root(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """G^(1/2) and the pseudo-inverse of G^(1/2) of a symmetric positive semi-definite G.

    Directions with an eigenvalue below 1e-10 of the largest (singular values below 1e-5 of
    the largest) count as zero: they carry nothing the float32 blob could keep.
    """
    values, vectors = np.linalg.eigh(gram)
    values = np.where(values > 1e-10 * max(values.max(initial=0.0), 0.0), values, 0.0)
    root = np.sqrt(values)
    inverse = np.divide(1.0, root, out=np.zeros_like(root), where=root > 0)
    return (vectors * root) @ vectors.T, (vectors * inverse) @ vectors.T


def balance(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A', B') = (√S Vᵀ, U√S) with B'A' = BA; same shapes and dtype as (A, B).

    Through the r x r Gram matrices (A = G_A^½ Q_Aᵀ, B = Q_B G_B^½, so BA = Q_B M Q_Aᵀ with
    M = G_B^½ G_A^½ = u s vᵀ): B' = B (G_B^-½ u √s) and A' = (√s vᵀ G_A^-½) A. The r x r gauge
    (eigen-decompositions, SVD) is computed in float64; the products with the factors, O((in +
    out) r²), in the factors' own precision (float32 in `compress`, whose blob stores float32):
    the product is kept whatever the Gram matrices' rounding, since M is built from the same
    roots that undo it. The out x in product is never formed. Components beyond the product's
    rank (singular values below 1e-6 of the largest, the Gram matrices' rounding) are zero rows
    of A' and columns of B'. Each component's sign is fixed (the largest entry of its row of A'
    is positive), so the result does not depend on the LAPACK build's sign choices.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # `small_product` redoes an overflow
        root_a, inverse_root_a = _root_and_inverse_root(small_product(a, a.T))
        root_b, inverse_root_b = _root_and_inverse_root(small_product(b.T, b))
    u, s, vt = np.linalg.svd(root_b @ root_a)
    s = np.where(s > 1e-6 * s.max(initial=0.0), s, 0.0)  # below: the Gram roots' rounding
    half = np.sqrt(s)
    with np.errstate(over="ignore", invalid="ignore"):  # `compress` refuses what overflows
        a_rows = ((half[:, None] * vt) @ inverse_root_a).astype(a.dtype) @ a
        b_cols = b @ ((inverse_root_b @ u) * half).astype(b.dtype)
    flip = np.where(a_rows[np.arange(len(s)), np.abs(a_rows).argmax(axis=1)] < 0, -1, 1)
    a_rows *= flip[:, None].astype(a.dtype)
    b_cols *= flip.astype(b.dtype)
    return a_rows, b_cols


def product_inner(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> float:
    """⟨B1·A1, B2·A2⟩ (Frobenius) through r x r matrices: trace((B1ᵀB2)(A2A1ᵀ)).

    The r x r products come from `small_product` (float32 inputs: float32 BLAS, about 1e-6
    relative), their trace in float64.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.einsum("ij,ji->", small_product(b1.T, b2), small_product(a2, a1.T)))
