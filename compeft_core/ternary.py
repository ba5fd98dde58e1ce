"""Numba kernels for the hot loops: statistics, exact top-k selection, and (un)packing.

All kernels work on one flat float32 vector split into segments (one per scope): per-tensor
scope has one segment per tensor, global scope a single segment over everything.
Positions are global, so the mask of the whole expert is one bit stream (bit i of byte i // 8,
least significant bit first) and the signs of kept entries are one bit stream in position order
(bit set = negative).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, parallel=True)
def segment_moments(values, starts, ends):
    """Per segment: (sum, sum of squared deviations) in float64, two-pass for accuracy."""
    n_seg = starts.shape[0]
    sums = np.zeros(n_seg, dtype=np.float64)
    squares = np.zeros(n_seg, dtype=np.float64)
    for s in numba.prange(n_seg):
        total = 0.0
        for i in range(starts[s], ends[s]):
            total += values[i]
        sums[s] = total
        mean = total / max(ends[s] - starts[s], 1)
        acc = 0.0
        for i in range(starts[s], ends[s]):
            dev = values[i] - mean
            acc += dev * dev
        squares[s] = acc
    return sums, squares


@numba.njit(cache=True, nogil=True)
def _kth_largest_bits(bits, lo, hi, k):
    """Radix select on |x| bit patterns (monotone for non-negative floats).

    Returns (threshold pattern t, how many entries equal to t must still be kept).
    """
    high = np.zeros(65536, dtype=np.int64)
    for i in range(lo, hi):
        high[(bits[i] & np.uint32(0x7FFFFFFF)) >> np.uint32(16)] += 1
    above = 0
    bucket = 65535
    while above + high[bucket] < k:
        above += high[bucket]
        bucket -= 1
    low = np.zeros(65536, dtype=np.int64)
    for i in range(lo, hi):
        b = bits[i] & np.uint32(0x7FFFFFFF)
        if (b >> np.uint32(16)) == bucket:
            low[b & np.uint32(0xFFFF)] += 1
    sub = 65535
    while above + low[sub] < k:
        above += low[sub]
        sub -= 1
    threshold = np.uint32((bucket << 16) | sub)
    return threshold, k - above


@numba.njit(cache=True, nogil=True, parallel=True)
def select_thresholds(bits, starts, ends, ks):
    """Exact top-k threshold per segment; ties at the threshold go to the lowest positions."""
    n_seg = starts.shape[0]
    thresholds = np.zeros(n_seg, dtype=np.uint32)
    ties = np.zeros(n_seg, dtype=np.int64)
    for s in numba.prange(n_seg):
        if ks[s] > 0:
            thresholds[s], ties[s] = _kth_largest_bits(bits, starts[s], ends[s], ks[s])
    return thresholds, ties


@numba.njit(cache=True, nogil=True)
def pack_ternary(values, bits, starts, ends, ks, thresholds, ties):
    """Pack the kept positions and their signs; also return sum |x| over kept entries per segment.

    Entries that are exactly zero count towards k (they are among the k largest) but decode to
    sign(0) = 0, so they are written as not kept.
    """
    n = values.shape[0]
    mask = np.zeros((n + 7) // 8, dtype=np.uint8)
    signs = np.zeros((n + 7) // 8, dtype=np.uint8)
    abs_sums = np.zeros(starts.shape[0], dtype=np.float64)
    kept = 0
    for s in range(starts.shape[0]):
        if ks[s] == 0:
            continue
        t = thresholds[s]
        ties_left = ties[s]
        acc = 0.0
        for i in range(starts[s], ends[s]):
            b = bits[i] & np.uint32(0x7FFFFFFF)
            if b < t:
                continue
            if b == t:
                if ties_left == 0:
                    continue
                ties_left -= 1
            v = values[i]
            acc += abs(v)
            if b != 0:
                mask[i >> 3] |= np.uint8(1 << (i & 7))
                if v < 0:
                    signs[kept >> 3] |= np.uint8(1 << (kept & 7))
                kept += 1
        abs_sums[s] = acc
    return mask, signs[: (kept + 7) // 8].copy(), kept, abs_sums


_POPCOUNT = np.array([b.bit_count() for b in range(256)], dtype=np.int64)


@numba.njit(cache=True, nogil=True, parallel=True)
def kept_per_range(mask, starts, ends):
    """Number of set mask bits in each position range [start, end)."""
    counts = np.zeros(starts.shape[0], dtype=np.int64)
    for r in numba.prange(starts.shape[0]):
        total = 0
        i = starts[r]
        while i < ends[r] and i & 7:
            total += (mask[i >> 3] >> (i & 7)) & 1
            i += 1
        while i + 8 <= ends[r]:
            total += _POPCOUNT[mask[i >> 3]]
            i += 8
        while i < ends[r]:
            total += (mask[i >> 3] >> (i & 7)) & 1
            i += 1
        counts[r] = total
    return counts


@numba.njit(cache=True, nogil=True, inline="always")
def _write_kept(i, start, j, signs, positive, negative, out):
    if (signs[j >> 3] >> (j & 7)) & 1:
        out[i - start] = negative
    else:
        out[i - start] = positive


@numba.njit(cache=True, nogil=True)
def unpack_range(mask, start, end, signs, first_sign, positive, negative, out):
    """Write +-scale at the kept positions of [start, end) into `out` (zero-filled, an integer view
    of the target dtype, indexed from `start`); signs are read from bit `first_sign` on.

    Whole mask bytes are walked set bit by set bit, so the cost follows the kept entries, not n.
    """
    j = first_sign
    i = start
    while i < end and i & 7:
        if (mask[i >> 3] >> (i & 7)) & 1:
            _write_kept(i, start, j, signs, positive, negative, out)
            j += 1
        i += 1
    while i + 8 <= end:
        b = np.int64(mask[i >> 3])
        while b:
            low = b & -b
            bit = 0
            while (low >> bit) != 1:
                bit += 1
            _write_kept(i + bit, start, j, signs, positive, negative, out)
            j += 1
            b ^= low
        i += 8
    while i < end:
        if (mask[i >> 3] >> (i & 7)) & 1:
            _write_kept(i, start, j, signs, positive, negative, out)
            j += 1
        i += 1


@numba.njit(cache=True, nogil=True, parallel=True)
def unpack_ranges(mask, starts, ends, signs, first_signs, positive, negative, out):
    """`unpack_range` for every range in parallel, into one flat zero-filled `out`."""
    for r in numba.prange(starts.shape[0]):
        unpack_range(
            mask,
            starts[r],
            ends[r],
            signs,
            first_signs[r],
            positive[r],
            negative[r],
            out[starts[r] : ends[r]],
        )


_ONE_BITS = np.array([1.0, -1.0], dtype=np.float32).view(np.int32)


def ternary_values(
    mask: np.ndarray, signs: np.ndarray, start: int, end: int, first_sign: int
) -> np.ndarray:
    """The ternary entries (+1, -1, 0 as float32) of positions [start, end) of a packed mask.

    `first_sign` is the index of the first sign bit of the range (kept entries before `start`).
    """
    out = np.zeros(end - start, dtype=np.int32)
    unpack_range(mask, start, end, signs, first_sign, _ONE_BITS[0], _ONE_BITS[1], out)
    return out.view(np.float32)
