"""The named delta codecs of the blob: which entries are kept, and what is stored per kept entry.

All share the blob's streams (an rANS-coded keep-mask, one sign bit per kept entry, per-segment
sigma and alpha) and differ in how they choose the kept entries and whether they store magnitude
levels (`compeft_core.levels`); so one decoder serves all, and a blob records its codec only to
say how it was made (docs/blob-format.md, "Codecs"):
- `compeft` (ComPEFT, arXiv 2311.13171): the round(density x n) entries of largest magnitude, sign
  only. The hub's LoRA choices (balanced factorisation, unbiased scale) are its defaults.
- `bitdelta` (arXiv 2402.10193): every entry's sign and one L2-optimal scale per matrix: ComPEFT
  at density 1, as trained. Its scale distillation needs the base model and data; the hub does
  not run it yet (see docs/blob-format.md).
- `dare` (drop and rescale, arXiv 2311.03099): a uniformly random subset of round(density x n)
  entries per segment (drop rate p = 1 - density), each rescaled by 1 / density, stored at reduced
  precision: sign + `value_bits` magnitude bits (default 4). The paper keeps full precision; the
  hub's blob stores levels, as the issue asks ("stored at reduced precision").
- `deltadq` (DeltaDQ, arXiv 2410.08666): group-wise dropout, DARE's drop and rescale done within
  each group of `group_size` consecutive entries (along a matrix row: the input dimension), so
  every group keeps the same share (density x group_size, to within one entry) and every
  output's sum of kept terms stays balanced; then the kept values are quantised on a uniform
  grid (the blob's levels, default 4 bits + sign). The paper's Separate Quantization splits each k-bit value into parts of
  fewer bits for storage and compute; it rearranges the same bits and is not a separate stream
  here. The paper searches the group size per model; the hub's is GROUP_SIZE (docs/blob-format.md
  says how it was measured).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compeft_core.errors import CompressionInputError
from compeft_core.formats import MAX_VALUE_BITS, CodecName


@dataclass(frozen=True)
class Codec:
    """What a codec fixes and what it leaves to the caller (None: the caller's choice)."""

    name: str
    selection: str  # "magnitude" (top-k by |x|) or "random" (a seeded uniform subset)
    density: float | None  # fixed density, or None for the caller's (default DEFAULT_DENSITY)
    value_bits: int  # default magnitude bits per kept entry
    factorisation: str  # default LoRA gauge
    scale: str  # default alpha rule; codecs with value bits fit alpha with the levels ("entry")
    rescale: bool  # kept values divided by the density before they are coded (DARE)
    # "random" only: the draw keeps the same share of every run of this many entries (DeltaDQ)
    group_size: int | None = None


DEFAULT_DENSITY = 0.1
GROUP_SIZE = 16
CODECS: dict[CodecName, Codec] = {
    "compeft": Codec("compeft", "magnitude", None, 0, "balanced", "unbiased", rescale=False),
    "bitdelta": Codec("bitdelta", "magnitude", 1.0, 0, "as-trained", "entry", rescale=False),
    "dare": Codec("dare", "random", None, 4, "as-trained", "entry", rescale=True),
    "deltadq": Codec(
        "deltadq", "random", None, 4, "as-trained", "entry", rescale=True, group_size=GROUP_SIZE
    ),
}


def codec_named(name: str) -> Codec:
    """The codec called `name`, or CompressionInputError listing the known ones."""
    if name not in CODECS:
        raise CompressionInputError(f"codec must be one of {', '.join(CODECS)}, got {name!r}")
    return CODECS[name]


def checked_value_bits(codec: Codec, value_bits: int | None) -> int:
    """The magnitude bits to store: the codec's default, or the caller's within 0..MAX."""
    if value_bits is None:
        return codec.value_bits
    if type(value_bits) is not int or not 0 <= value_bits <= MAX_VALUE_BITS:
        raise CompressionInputError(
            f"value_bits must be an integer from 0 to {MAX_VALUE_BITS}, got {value_bits!r}"
        )
    return value_bits


def random_keep(size: int, k: int, generator: np.random.Generator) -> np.ndarray:
    """A boolean array with exactly `k` of `size` entries set, uniformly at random."""
    keep = np.zeros(size, dtype=bool)
    keep[generator.choice(size, size=k, replace=False)] = True
    return keep


def grouped_keep(size: int, k: int, group_size: int, generator: np.random.Generator) -> np.ndarray:
    """A boolean array with exactly `k` of `size` entries set, spread over the runs of
    `group_size` consecutive entries (the last may be shorter) in proportion to their lengths:
    run i keeps round(k x end_i / size) - round(k x start_i / size) of its entries, uniformly at
    random, so every run keeps its share to within one entry and the total is exact (the 1 /
    density rescale stays unbiased)."""
    groups = -(-size // group_size)
    bounds = np.minimum(np.arange(groups + 1) * group_size, size)
    shares = np.diff(np.rint(k * bounds / size).astype(np.int64))
    keys = generator.random((groups, group_size))
    keys.reshape(-1)[size:] = np.inf  # the padding of the last run is never kept
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return (ranks < shares[:, None]).reshape(-1)[:size]
