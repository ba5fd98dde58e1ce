"""What `compress` does with LoRA pairs beyond the paper, on its flat float32 vector: balance them,
choose their unbiased scales, and measure the fidelity of every module once the blob is decided.

The ternary entries are read back from the packed mask and signs (`ternary_values`), so nothing
is decoded from the rANS streams; the r x r products run in float32 BLAS with their traces in
float64 (about 1e-6 relative: ample for a scale and for figures shown with three digits).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from compeft_core.errors import CompressionInputError
from compeft_core.fidelity import Fidelity
from compeft_core.lora_gauge import LoraPair, balance, product_inner
from compeft_core.ternary import kept_per_range, ternary_values

PARALLEL_PARAMS = 1 << 22
Item = TypeVar("Item")
Result = TypeVar("Result")


def in_parallel(work: Callable[[Item], Result], items: list[Item], params: int) -> list[Result]:
    """`work` on each item, one thread per core, BLAS held to one thread each.

    One LoRA module's products are too small for BLAS to gain from its own threads (they made
    the per-pair work slower, measured in bench/codec.py), while the pairs are independent and
    BLAS and numba release the GIL. Below PARALLEL_PARAMS in all, starting the threads (and
    limiting BLAS) costs more than it saves.
    """
    workers = min(len(items), os.cpu_count() or 1)
    if workers < 2 or params < PARALLEL_PARAMS:
        return [work(item) for item in items]
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, items))


@dataclass(frozen=True)
class TensorLayout:
    """Where each tensor (in name order) lies in the flat vector."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, names: list[str], shapes: list[tuple[int, ...]], sizes: list[int]) -> TensorLayout:
        ends = np.cumsum(np.asarray(sizes, dtype=np.int64))
        return cls(names, shapes, ends - np.asarray(sizes, dtype=np.int64), ends)

    def view(self, flat: np.ndarray, index: int) -> np.ndarray:
        """Tensor `index` of `flat`, in its shape (a view: writing to it writes `flat`)."""
        return flat[self.starts[index] : self.ends[index]].reshape(self.shapes[index])


def balance_pairs(
    flat: np.ndarray,
    layout: TensorLayout,
    pairs: list[LoraPair],
    beyond_float32: Callable[[str], str],
) -> None:
    """Overwrite each pair's A and B in `flat` by their balanced factors."""

    def balanced(pair: LoraPair) -> tuple[np.ndarray, np.ndarray]:
        try:
            return balance(layout.view(flat, pair.a), layout.view(flat, pair.b))
        except np.linalg.LinAlgError as exc:
            raise CompressionInputError(
                f"{pair.module}: its LoRA factors cannot be balanced ({exc}); factorisation "
                "'as-trained' compresses them as uploaded"
            ) from exc

    every = in_parallel(balanced, pairs, flat.size)
    for pair, (balanced_a, balanced_b) in zip(pairs, every, strict=True):
        for index, values in ((pair.a, balanced_a), (pair.b, balanced_b)):
            if not np.abs(values).max(initial=0.0) <= np.finfo(np.float32).max:
                raise CompressionInputError(
                    f"{beyond_float32(layout.names[index])} (after balancing {pair.module}; "
                    "factorisation 'as-trained' compresses it as uploaded)"
                )
            layout.view(flat, index)[...] = values


@dataclass(frozen=True)
class PairMoments:
    """Per pair: ‖BA‖², ⟨BA, T_B T_A⟩ and ‖T_B T_A‖² (the last only when fidelity is measured)."""

    squared_norm: np.ndarray
    inner: np.ndarray
    ternary_norm: np.ndarray | None


class Ternaries:
    """The ternary entries of any tensor of a compressed flat vector, from its packed mask."""

    def __init__(self, layout: TensorLayout, mask: np.ndarray, signs: np.ndarray) -> None:
        self.layout, self.mask, self.signs = layout, mask, signs
        kept = kept_per_range(mask, layout.starts, layout.ends)
        self.first_signs = np.cumsum(kept) - kept

    def of(self, index: int) -> np.ndarray:
        """Tensor `index` as +1, -1 and 0 (float32), in its shape."""
        values = ternary_values(
            self.mask,
            self.signs,
            int(self.layout.starts[index]),
            int(self.layout.ends[index]),
            int(self.first_signs[index]),
        )
        return values.reshape(self.layout.shapes[index])


def pair_moments(
    flat: np.ndarray, ternaries: Ternaries, pairs: list[LoraPair], with_ternary_norm: bool
) -> PairMoments:
    """The moments of every pair (`flat` holds the values compressed: the product is the same
    in either gauge)."""
    layout = ternaries.layout

    def moments(pair: LoraPair) -> tuple[float, float, float]:
        a, b = layout.view(flat, pair.a), layout.view(flat, pair.b)
        ternary_a, ternary_b = ternaries.of(pair.a), ternaries.of(pair.b)
        return (
            product_inner(a, b, a, b),
            product_inner(a, b, ternary_a, ternary_b),
            product_inner(ternary_a, ternary_b, ternary_a, ternary_b) if with_ternary_norm else 0.0,
        )

    rows = np.array(in_parallel(moments, pairs, flat.size), dtype=np.float64).reshape(-1, 3)
    return PairMoments(rows[:, 0], rows[:, 1], rows[:, 2] if with_ternary_norm else None)


def unbiased_alphas(
    pairs: list[LoraPair], moments: PairMoments, scope: str, sigma: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """`alphas` with each pair's given the product scale c = ‖BA‖² / ⟨BA, T_B T_A⟩, √c per factor.

    Under global scope all tensors share one alpha: c then comes from the sums over all pairs.
    A pair whose ternary product does not point along its update (⟨BA, T_B T_A⟩ <= 0) gets 0.
    """
    norms, inner = moments.squared_norm, moments.inner
    if scope == "global":
        norms, inner = norms.sum(keepdims=True), inner.sum(keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = np.where(inner > 0, np.sqrt(norms / inner), 0.0)
    alphas = alphas.astype(np.float64)
    owners = [[0]] if scope == "global" else [[p.a, p.b] for p in pairs]
    for root, segments in zip(roots, owners, strict=True):
        for segment in segments:
            alphas[segment] = root / sigma[segment] if sigma[segment] > 0 else 0.0
    return alphas.astype(np.float32)


def measured_fidelity(
    flat: np.ndarray,
    ternaries: Ternaries,
    pairs: list[LoraPair],
    moments: PairMoments,
    decoded_scales: np.ndarray,
) -> dict[str, Fidelity]:
    """Module path (pairs) or tensor name -> fidelity, from the moments and the scale each
    tensor decodes with (alpha * sigma of its segment, `decoded_scales[tensor]`).

    `flat` holds the values compressed, which for a pair have the uploaded product, and for
    any other tensor are the uploaded values.
    """
    if moments.ternary_norm is None:
        raise ValueError("measured_fidelity needs pair_moments(..., with_ternary_norm=True)")
    figures = {}
    paired = set()
    for pair, norm, inner, ternary_norm in zip(
        pairs, moments.squared_norm, moments.inner, moments.ternary_norm, strict=True
    ):
        scale = float(decoded_scales[pair.a]) * float(decoded_scales[pair.b])
        figures[pair.module] = Fidelity.of(
            float(norm), scale * float(inner), scale * scale * float(ternary_norm)
        )
        paired.update((pair.a, pair.b))
    layout = ternaries.layout
    for index, name in enumerate(layout.names):
        if index not in paired:
            x = layout.view(flat, index).reshape(-1).astype(np.float64)
            ternary = ternaries.of(index).reshape(-1).astype(np.float64)
            scale = float(decoded_scales[index])
            figures[name] = Fidelity.of(
                float(x @ x), scale * float(x @ ternary), scale * scale * float(ternary @ ternary)
            )
    return figures
