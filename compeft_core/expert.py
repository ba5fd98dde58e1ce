"""`CompressedExpert`: a compressed set of tensors (ComPEFT or another codec), as held in memory.

An expert keeps, per scope segment (one per tensor, or one for all tensors), the standard deviation
sigma of the values it compressed and a default alpha; a kept entry decodes to
alpha * sigma * sign(x) (times its magnitude level's grid point where the codec stores
`value_bits` > 0, `compeft_core.levels`) and every other entry to 0. Alpha can be changed at
decode time without touching the coded data. `factorisation` and `scale` record how LoRA pairs were re-factored and
how the default alphas were chosen (`compeft_core.compress`); decoding does not depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np

from compeft_core.errors import BlobFormatError, CompressionInputError
from compeft_core.fidelity import Fidelity
from compeft_core.formats import DEFAULT_CODEC
from compeft_core.levels import kept_positions, kept_values, unpack_levels
from compeft_core.rans import RansDecodeError, decode_bytes
from compeft_core.ternary import kept_per_range, unpack_ranges

if TYPE_CHECKING:  # torch is needed only to decompress to torch tensors (the `torch` extra)
    import numpy.typing as npt
    import torch

SCOPES = ("tensor", "global")
SCALES = ("entry", "unbiased")  # the default-alpha rules `compress` offers
STORED_SCALES = (*SCALES, "fixed")  # "fixed": one alpha given to `compress` for every segment
# Output dtypes numpy has, and the signed integer type of the same width that the kernel writes.
_NUMPY_BIT_VIEWS = {
    np.dtype(np.float16): np.dtype(np.int16),
    np.dtype(np.float32): np.dtype(np.int32),
    np.dtype(np.float64): np.dtype(np.int64),
}


def _torch_bit_views() -> dict[torch.dtype, torch.dtype]:
    """The same for torch, bfloat16 included (imported here: torch is optional)."""
    import torch

    return {
        torch.float16: torch.int16,
        torch.bfloat16: torch.int16,
        torch.float32: torch.int32,
        torch.float64: torch.int64,
    }


@dataclass(frozen=True, eq=False)
class CompressedExpert:
    """Tensors compressed with ComPEFT; see docs/blob-format.md for the serialized form."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    scope: str
    density: float
    sigma: np.ndarray
    alpha: np.ndarray
    mask_words: np.ndarray
    mask_streams: tuple[int, ...]
    signs: np.ndarray
    kept: int
    extra: dict[str, str] = field(default_factory=dict)
    factorisation: str = "as-trained"
    scale: str = "entry"
    codec: str = DEFAULT_CODEC  # how the kept entries were chosen and coded (`compeft_core.codecs`)
    value_bits: int = 0  # magnitude bits per kept entry (`compeft_core.levels`); 0: sign only
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    # Measured by `compress(..., measure_fidelity=True)`; not part of the blob (empty once parsed)
    fidelity: dict[str, Fidelity] = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        """Number of entries over all tensors (dense size)."""
        return sum(prod(shape) for shape in self.shapes)

    @cached_property
    def _blob(self) -> bytes:
        from compeft_core.codec import encode_blob

        return encode_blob(self)

    def to_bytes(self) -> bytes:
        """The blob: a safetensors file carrying the coded streams (see docs/blob-format.md)."""
        return self._blob

    @classmethod
    def from_bytes(cls, data: bytes) -> CompressedExpert:
        """Parse a blob; raises BlobFormatError for anything truncated, corrupted or unsupported."""
        from compeft_core.codec import decode_blob

        return decode_blob(data)

    @property
    def nbytes(self) -> int:
        """Size of the serialized blob in bytes, headers included."""
        return len(self._blob)

    @property
    def bits_per_param(self) -> float:
        """Blob bits per dense parameter."""
        return 8 * self.nbytes / max(self.num_params, 1)

    @property
    def sigmas(self) -> dict[str, float]:
        """Sigma that applies to each tensor (the same value for all under global scope)."""
        return {name: float(self.sigma[self._segment(i)]) for i, name in enumerate(self.names)}

    @property
    def default_alphas(self) -> dict[str, float]:
        """Default alpha that applies to each tensor."""
        return {name: float(self.alpha[self._segment(i)]) for i, name in enumerate(self.names)}

    @property
    def metadata(self) -> dict[str, Any]:
        """A JSON-friendly summary: what the registry records about a blob."""
        return {
            "scope": self.scope,
            "density": self.density,
            "num_params": self.num_params,
            "kept": self.kept,
            "num_tensors": len(self.names),
            "sigma": {
                "min": float(self.sigma.min()),
                "mean": float(self.sigma.mean()),
                "max": float(self.sigma.max()),
            },
            "alpha": {
                "min": float(self.alpha.min()),
                "mean": float(self.alpha.mean()),
                "max": float(self.alpha.max()),
            },
            "factorisation": self.factorisation,
            "scale": self.scale,
            "codec": self.codec,
            "value_bits": self.value_bits,
            "nbytes": self.nbytes,
            "bits_per_param": self.bits_per_param,
            "extra": dict(self.extra),
        }

    def _segment(self, tensor_index: int) -> int:
        return tensor_index if self.scope == "tensor" else 0

    def decompress(
        self, alpha: float | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Dense torch tensors (float16 unless `dtype` says otherwise): alpha * sigma * sign on
        kept entries, 0 elsewhere.

        `alpha=None` uses each segment's stored default alpha; a number overrides it everywhere.
        The returned tensors are disjoint views of one buffer; safetensors saves them as they are.
        """
        import torch

        dtype = torch.float16 if dtype is None else dtype
        bit_views = _torch_bit_views()
        if dtype not in bit_views:
            raise CompressionInputError(
                f"cannot decompress to {dtype}; choose one of {', '.join(map(str, bit_views))}"
            )
        if self.value_bits:
            positions, values = self._kept_values(alpha)
            flat = torch.zeros(self.num_params, dtype=dtype)
            flat[torch.from_numpy(positions)] = torch.from_numpy(values).to(dtype)
        else:
            scales = torch.tensor(self._alphas(alpha) * self.sigma.astype(np.float64), dtype=dtype)
            view = bit_views[dtype]
            bits = self._decoded_bits(scales.view(view).numpy(), (-scales).view(view).numpy())
            flat = torch.from_numpy(bits).view(dtype)
        chunks = torch.split(flat, [prod(s) for s in self.shapes])
        return {
            name: chunk.view(shape)
            for name, chunk, shape in zip(self.names, chunks, self.shapes, strict=True)
        }

    def decompress_numpy(
        self, alpha: float | None = None, dtype: npt.DTypeLike = np.float32
    ) -> dict[str, np.ndarray]:
        """`decompress` as numpy arrays (float16, float32 or float64), for clients without torch.

        The arrays are disjoint views of one buffer, like `decompress`'s tensors.
        """
        dtype = np.dtype(dtype)
        if dtype not in _NUMPY_BIT_VIEWS:
            raise CompressionInputError(
                f"cannot decompress to {dtype}; choose one of "
                f"{', '.join(map(str, _NUMPY_BIT_VIEWS))}"
            )
        if self.value_bits:
            positions, values = self._kept_values(alpha)
            flat = np.zeros(self.num_params, dtype=dtype)
            flat[positions] = values
        else:
            scales = (self._alphas(alpha) * self.sigma.astype(np.float64)).astype(dtype)
            view = _NUMPY_BIT_VIEWS[dtype]
            flat = self._decoded_bits(scales.view(view), (-scales).view(view)).view(dtype)
        ends = np.cumsum([prod(shape) for shape in self.shapes])
        return {
            name: chunk.reshape(shape)
            for name, chunk, shape in zip(
                self.names, np.split(flat, ends[:-1]), self.shapes, strict=True
            )
        }

    def _alphas(self, alpha: float | None) -> np.ndarray:
        """Each segment's alpha in float64: the stored defaults, or `alpha` everywhere."""
        if alpha is None:
            return self.alpha.astype(np.float64)
        if not np.isfinite(alpha):
            raise CompressionInputError(f"alpha must be a finite number, got {alpha}")
        return np.full(len(self.alpha), alpha, dtype=np.float64)

    def _kept_values(self, alpha: float | None) -> tuple[np.ndarray, np.ndarray]:
        """(positions, float64 values) of the kept entries of a codec with magnitude levels."""
        positions = kept_positions(self._decoded_mask(), self.num_params)
        if positions.size != self.kept:
            raise BlobFormatError(
                f"the mask marks {positions.size} kept entries but the blob carries {self.kept} "
                "signs"
            )
        ends = np.cumsum([prod(shape) for shape in self.shapes])
        segment_ends = ends if self.scope == "tensor" else ends[-1:]
        values = kept_values(
            positions,
            self.signs,
            unpack_levels(self.levels, self.kept, self.value_bits),
            self.value_bits,
            self._alphas(alpha) * self.sigma.astype(np.float64),
            segment_ends,
        )
        return positions, values

    def _decoded_bits(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """The dense entries as integers of one width: each kept entry is its segment's
        `positive` or `negative` bit pattern (the scale in the output dtype), every other 0."""
        mask = self._decoded_mask()
        sizes = np.array([prod(shape) for shape in self.shapes], dtype=np.int64)
        ends = np.cumsum(sizes)
        starts = ends - sizes
        counts = kept_per_range(mask, starts, ends)
        if counts.sum() != self.kept:
            raise BlobFormatError(
                f"the mask marks {counts.sum()} kept entries but the blob carries {self.kept} signs"
            )
        first_signs = np.cumsum(counts) - counts
        # One zeroed buffer (calloc: no pass over memory, no torch thread pool); the returned
        # tensors or arrays are disjoint views of it, which safetensors saves as separate tensors.
        flat = np.zeros(int(ends[-1]), dtype=positive.dtype)
        segments = [self._segment(i) for i in range(len(self.names))]
        unpack_ranges(
            mask,
            starts,
            ends,
            self.signs,
            first_signs,
            positive[segments],
            negative[segments],
            flat,
        )
        return flat

    def _decoded_mask(self) -> np.ndarray:
        n = self.num_params
        try:
            mask = decode_bytes(
                self.mask_words, list(self.mask_streams), (n + 7) // 8, self.kept, n
            )
        except RansDecodeError as exc:
            raise BlobFormatError(f"corrupted blob: {exc}") from exc
        if n % 8 and mask[-1] >> (n % 8):
            raise BlobFormatError("corrupted blob: the mask marks positions past the last tensor")
        return mask
