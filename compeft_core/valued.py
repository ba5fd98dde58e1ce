"""The kept entries of the codecs beyond ComPEFT's top-k signs: random selection and levels.

ComPEFT's own path (`compeft_core.ternary`) selects by magnitude and decodes every kept entry of
a segment to +-alpha * sigma. Here: DARE's and DeltaDQ's random selection (`random_ternary`),
the magnitude levels of the kept entries (`level_values`, `compeft_core.levels`), their decoding
(`kept_positions`, `kept_values`) and their fidelity, which the ternary moments cannot give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compeft_core.codecs import Codec, grouped_keep, random_keep
from compeft_core.fidelity import Fidelity
from compeft_core.levels import fit_levels, kept_positions, pack_levels
from compeft_core.lora_gauge import LoraPair
from compeft_core.lora_scales import TensorLayout


def random_ternary(
    flat: np.ndarray,
    layout: TensorLayout,
    segments: tuple[np.ndarray, np.ndarray],
    ks: np.ndarray,
    density: float,
    codec: Codec,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(mask, signs, kept) of `codec`'s random subset: without a group size, ks[s] positions of
    each segment (`segments`: starts, ends) uniformly; with one (DeltaDQ), round(density x size)
    of each tensor, spread evenly over its groups of `codec.group_size` consecutive entries.

    The subset is drawn from one generator seeded with `seed`, segment (or tensor) by segment,
    so the same input and seed give the same blob. Chosen entries that are exactly 0 are written
    as not kept.
    """
    generator = np.random.default_rng(seed)
    keep = np.zeros(flat.size, dtype=bool)
    starts, ends = segments
    if codec.group_size is None:
        for start, end, k in zip(starts, ends, ks, strict=True):
            keep[start:end] = random_keep(int(end - start), int(k), generator)
    else:
        for start, end in zip(layout.starts, layout.ends, strict=True):
            size = int(end - start)
            keep[start:end] = grouped_keep(size, round(density * size), codec.group_size, generator)
    keep &= flat != 0
    return (
        np.packbits(keep, bitorder="little"),
        np.packbits(flat[keep] < 0, bitorder="little"),
        int(keep.sum()),
    )


@dataclass(frozen=True)
class LevelledValues:
    """What `level_values` fits: each segment's magnitude M = alpha * sigma and the packed
    levels of the kept entries."""

    magnitudes: np.ndarray  # float64, one per segment
    packed_levels: np.ndarray  # uint8 stream, `compeft_core.levels.pack_levels`


def level_values(
    flat: np.ndarray,
    mask: np.ndarray,
    ends: np.ndarray,
    value_bits: int,
    rescale: float,
) -> LevelledValues:
    """Fit every segment's levels to the magnitudes of its kept entries times `rescale`.

    `ends` are the segments' end positions (the segments tile the flat vector).
    """
    positions = kept_positions(mask, flat.size)
    magnitudes = np.abs(flat[positions]).astype(np.float64) * rescale
    bounds = np.searchsorted(positions, ends)
    starts = np.concatenate([[0], bounds[:-1]])
    fitted = [
        fit_levels(magnitudes[start:end], value_bits)
        for start, end in zip(starts, bounds, strict=True)
    ]
    levels = np.concatenate([levels for _, levels in fitted]) if fitted else np.zeros(0, np.uint8)
    return LevelledValues(
        magnitudes=np.array([scale for scale, _ in fitted], dtype=np.float64),
        packed_levels=pack_levels(levels, value_bits),
    )


def decoded_fidelity(
    flat: np.ndarray, decoded: np.ndarray, layout: TensorLayout, pairs: list[LoraPair]
) -> dict[str, Fidelity]:
    """Module path (pairs, on the product B·A) or tensor name -> fidelity of `decoded` (the flat
    decoded values) against `flat` (the values compressed)."""

    def of(original: np.ndarray, approximation: np.ndarray) -> Fidelity:
        x, y = original.reshape(-1), approximation.reshape(-1)
        return Fidelity.of(float(x @ x), float(x @ y), float(y @ y))

    figures = {}
    paired = set()
    for pair in pairs:
        product = layout.view(flat, pair.b).astype(np.float64) @ layout.view(flat, pair.a)
        decoded_product = layout.view(decoded, pair.b) @ layout.view(decoded, pair.a)
        figures[pair.module] = of(product, decoded_product)
        paired.update((pair.a, pair.b))
    for index, name in enumerate(layout.names):
        if index not in paired:
            figures[name] = of(
                layout.view(flat, index).astype(np.float64), layout.view(decoded, index)
            )
    return figures
