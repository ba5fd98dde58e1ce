"""A byte-wise rANS coder whose model follows from one number: the density of the mask.

The ternary mask is packed 8 positions to a byte. If positions are kept independently with
probability p, a byte with c set bits has probability p^c (1-p)^(8-c); coding bytes with that
static model reaches the i.i.d. entropy bound n*H(p) without storing any table in the blob.
The frequency table is built from p = kept/total with integer arithmetic only, so encoder and
decoder agree bit for bit on every platform.

The coder is rANS with a 64-bit state and 32-bit renormalisation (as in ryg_rans' rans64):
symbols are encoded back to front and decoded front to back.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numba
import numpy as np

SCALE_BITS = 18
STREAM_BYTES = 1 << 18
MAX_STREAMS = 64
_PROB_BITS = 24
_STATE_LOW = np.uint64(1 << 31)


class RansDecodeError(Exception):
    """The coded stream does not decode to a consistent message."""


@lru_cache(maxsize=64)
def byte_model(kept: int, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (freq[256], cumulative start[257], slot->symbol table) for density kept/total.

    Frequencies sum to exactly 2**SCALE_BITS and every byte value has frequency >= 1, so any byte
    stays encodable even where the model is wrong (for example the zero padding of the last byte).
    """
    if total <= 0 or not 0 <= kept <= total:
        raise ValueError(f"invalid model counts kept={kept} total={total}")
    one = 1 << _PROB_BITS
    p_q = (kept * one + total // 2) // total
    numerators = [p_q**c * (one - p_q) ** (8 - c) for c in range(9)]
    denominator = one**8
    scale = 1 << SCALE_BITS
    by_popcount = [max(1, numerators[c] * scale // denominator) for c in range(9)]
    most_likely = max(range(9), key=lambda c: (numerators[c], -c))
    remainder = scale - sum(comb(8, c) * by_popcount[c] for c in range(9))
    by_popcount[most_likely] += remainder // comb(8, most_likely)
    popcounts = np.array([b.bit_count() for b in range(256)])
    freq = np.array([by_popcount[c] for c in popcounts], dtype=np.uint64)
    leftover = scale - int(freq.sum())
    freq[255 if most_likely == 8 else 0] += leftover
    start = np.zeros(257, dtype=np.uint64)
    np.cumsum(freq, out=start[1:])
    slot_to_symbol = np.repeat(np.arange(256, dtype=np.uint8), freq.astype(np.int64))
    return freq, start, slot_to_symbol


def stream_bounds(n_symbols: int, n_streams: int) -> np.ndarray:
    """Byte boundaries of `n_streams` equal chunks (the last may be shorter) of the mask."""
    chunk = -(-n_symbols // n_streams)
    return np.minimum(np.arange(n_streams + 1, dtype=np.int64) * chunk, n_symbols)


def streams_for(n_symbols: int) -> int:
    """How many independent streams to code `n_symbols` bytes in (each costs ~6 bytes)."""
    return max(1, min(MAX_STREAMS, n_symbols // STREAM_BYTES))


@numba.njit(cache=True, nogil=True)
def _encode_one(symbols, lo, hi, freq, start, scale_bits, out, end):
    """Encode symbols[lo:hi] backwards into out[..end]; returns the first word's index."""
    pos = end
    x = np.uint64(1) << np.uint64(31)
    shift = np.uint64(scale_bits)
    limit_base = ((np.uint64(1) << np.uint64(31)) >> shift) << np.uint64(32)
    for i in range(hi - 1, lo - 1, -1):
        s = symbols[i]
        f = freq[s]
        if x >= limit_base * f:
            pos -= 1
            out[pos] = np.uint32(x & np.uint64(0xFFFFFFFF))
            x >>= np.uint64(32)
        x = ((x // f) << shift) + (x % f) + start[s]
    pos -= 1
    out[pos] = np.uint32(x >> np.uint64(32))
    pos -= 1
    out[pos] = np.uint32(x & np.uint64(0xFFFFFFFF))
    return pos


@numba.njit(cache=True, nogil=True, parallel=True)
def _encode_streams(symbols, bounds, freq, start, scale_bits):
    n_streams = bounds.shape[0] - 1
    # A symbol costs at most scale_bits bits (every frequency is >= 1), so this cannot overflow.
    ends = np.zeros(n_streams, dtype=np.int64)
    total = 0
    for s in range(n_streams):
        total += (bounds[s + 1] - bounds[s]) * scale_bits // 32 + 4
        ends[s] = total
    out = np.empty(total, dtype=np.uint32)
    firsts = np.zeros(n_streams, dtype=np.int64)
    for s in numba.prange(n_streams):
        firsts[s] = _encode_one(
            symbols, bounds[s], bounds[s + 1], freq, start, scale_bits, out, ends[s]
        )
    return out, firsts, ends


@numba.njit(cache=True, nogil=True)
def _decode_one(words, w_lo, w_hi, out, lo, hi, freq, start, slot_to_symbol, scale_bits):
    """Decode out[lo:hi] from words[w_lo:w_hi]; 0 ok, 1 too short, 2 trailing, 3 bad state."""
    if w_hi - w_lo < 2:
        return 1
    x = np.uint64(words[w_lo]) | (np.uint64(words[w_lo + 1]) << np.uint64(32))
    pos = w_lo + 2
    shift = np.uint64(scale_bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    low = np.uint64(1) << np.uint64(31)
    for i in range(lo, hi):
        slot = x & mask
        s = slot_to_symbol[slot]
        out[i] = s
        x = freq[s] * (x >> shift) + slot - start[s]
        if x < low:
            if pos >= w_hi:
                return 1
            x = (x << np.uint64(32)) | np.uint64(words[pos])
            pos += 1
    if pos != w_hi:
        return 2
    if x != low:
        return 3
    return 0


@numba.njit(cache=True, nogil=True, parallel=True)
def _decode_streams(words, word_bounds, bounds, freq, start, slot_to_symbol, scale_bits):
    n_streams = bounds.shape[0] - 1
    out = np.empty(bounds[n_streams], dtype=np.uint8)
    status = np.zeros(n_streams, dtype=np.int64)
    for s in numba.prange(n_streams):
        status[s] = _decode_one(
            words,
            word_bounds[s],
            word_bounds[s + 1],
            out,
            bounds[s],
            bounds[s + 1],
            freq,
            start,
            slot_to_symbol,
            scale_bits,
        )
    return out, status.max()


def encode_bytes(symbols: np.ndarray, kept: int, total: int) -> tuple[np.ndarray, list[int]]:
    """Code a uint8 array under the density model kept/total.

    Returns the uint32 words of all streams, concatenated, and the word count of each stream.
    Streams code equal chunks of the input independently, so they decode in parallel.
    """
    freq, start, _ = byte_model(kept, total)
    symbols = np.ascontiguousarray(symbols, dtype=np.uint8)
    bounds = stream_bounds(symbols.shape[0], streams_for(symbols.shape[0]))
    out, firsts, ends = _encode_streams(symbols, bounds, freq, start, SCALE_BITS)
    words = np.concatenate([out[a:b] for a, b in zip(firsts, ends, strict=True)])
    return words, [int(b - a) for a, b in zip(firsts, ends, strict=True)]


def decode_bytes(
    words: np.ndarray, stream_words: list[int], n_symbols: int, kept: int, total: int
) -> np.ndarray:
    """Inverse of `encode_bytes`; raises RansDecodeError unless every stream decodes exactly.

    rANS ends in the state the encoder started from and consumes every word, so truncation and
    most corruptions are caught here; the blob's CRC catches the rest.
    """
    if (
        not 1 <= len(stream_words) <= max(1, min(MAX_STREAMS, n_symbols))
        or sum(stream_words) != len(words)
        or min(stream_words) < 2
    ):
        raise RansDecodeError("the entropy-coded mask streams have inconsistent lengths")
    freq, start, slot_to_symbol = byte_model(kept, total)
    word_bounds = np.concatenate([[0], np.cumsum(stream_words)]).astype(np.int64)
    bounds = stream_bounds(n_symbols, len(stream_words))
    symbols, status = _decode_streams(
        np.ascontiguousarray(words, dtype=np.uint32),
        word_bounds,
        bounds,
        freq,
        start,
        slot_to_symbol,
        SCALE_BITS,
    )
    if status:
        reason = {1: "ends early", 2: "has trailing data", 3: "ends in a wrong state"}[status]
        raise RansDecodeError(f"the entropy-coded mask stream {reason}")
    return symbols
