"""Magnitude levels: the value payload of codecs that keep more than the sign of an entry.

ComPEFT decodes every kept entry of a segment to the same magnitude, alpha * sigma. A codec with
`value_bits = b > 0` also stores, per kept entry, one of L = 2^b magnitude levels; level l
decodes to `alpha * sigma * grid[l]` with the grid of odd multiples

    grid[l] = (2 l + 1) / (2 L - 1),    l = 0 .. L - 1,

evenly spaced, ending at 1 and never 0 (a kept entry is never 0). At b = 0 the grid is [1]:
ComPEFT's decoding, and the fit below gives ComPEFT's L2-optimal alpha, so the sign-only codecs
are the b = 0 case of this one.

The magnitude M = alpha * sigma of a segment is fitted by alternating nearest-level assignment and
the least-squares M for the assignment (Lloyd's iteration on a fixed-shape grid), starting from
the largest magnitude; the levels stored are the nearest under the final M. Levels are packed `b` bits each, least significant bit first, in kept-entry
order, one stream for the whole expert.
"""

from __future__ import annotations

import numpy as np

FIT_ROUNDS = 4


def level_grid(value_bits: int) -> np.ndarray:
    """The L = 2^value_bits decoded magnitudes of the levels, relative to alpha * sigma."""
    count = 1 << value_bits
    return (2 * np.arange(count, dtype=np.float64) + 1) / (2 * count - 1)


def fit_levels(magnitudes: np.ndarray, value_bits: int) -> tuple[float, np.ndarray]:
    """(M, levels) minimising sum (m - M grid[level])^2 over one segment's kept magnitudes (> 0).

    Returns M = 0 and no levels for an empty segment.
    """
    if magnitudes.size == 0:
        return 0.0, np.zeros(0, dtype=np.uint8)
    grid = level_grid(value_bits)
    scale = float(magnitudes.max())
    for _ in range(FIT_ROUNDS):
        chosen = grid[nearest_levels(magnitudes / scale, value_bits)]
        scale = float(magnitudes @ chosen / (chosen @ chosen))
    # Assigned last, so that every entry decodes to the level nearest to it under the stored M.
    return scale, nearest_levels(magnitudes / scale, value_bits)


def nearest_levels(relative: np.ndarray, value_bits: int) -> np.ndarray:
    """The level whose grid point is nearest to each relative magnitude."""
    count = 1 << value_bits
    level = np.rint(((2 * count - 1) * relative - 1) / 2)
    return np.clip(level, 0, count - 1).astype(np.uint8)


def pack_levels(levels: np.ndarray, value_bits: int) -> np.ndarray:
    """`value_bits` bits per level, least significant first, as one byte stream."""
    if value_bits == 0:
        return np.zeros(0, dtype=np.uint8)
    planes = np.unpackbits(levels.astype(np.uint8)[:, None], axis=1, bitorder="little")
    return np.packbits(planes[:, :value_bits].reshape(-1), bitorder="little")


def packed_level_bytes(kept: int, value_bits: int) -> int:
    """Size of `pack_levels`' stream for `kept` entries."""
    return (kept * value_bits + 7) // 8


def unpack_levels(packed: np.ndarray, kept: int, value_bits: int) -> np.ndarray:
    """Inverse of `pack_levels` (the stream must hold `packed_level_bytes(kept, value_bits)`)."""
    if value_bits == 0:
        return np.zeros(kept, dtype=np.uint8)
    bits = np.unpackbits(packed, bitorder="little", count=kept * value_bits)
    weights = (1 << np.arange(value_bits)).astype(np.uint8)
    return (bits.reshape(kept, value_bits) * weights).sum(axis=1, dtype=np.uint8)


def kept_positions(mask: np.ndarray, num_params: int) -> np.ndarray:
    """The positions of the set mask bits, in order (int64)."""
    return np.flatnonzero(np.unpackbits(mask, bitorder="little", count=num_params))


def kept_values(
    positions: np.ndarray,
    signs: np.ndarray,
    levels: np.ndarray,
    value_bits: int,
    segment_scales: np.ndarray,
    segment_ends: np.ndarray,
) -> np.ndarray:
    """The decoded value of each kept entry in float64: +-scale of its segment x grid[level]."""
    negative = np.unpackbits(signs, bitorder="little", count=positions.size).astype(bool)
    scales = segment_scales[np.searchsorted(segment_ends, positions, side="right")]
    values = scales * level_grid(value_bits)[levels]
    return np.where(negative, -values, values)
