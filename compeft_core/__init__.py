"""ComPEFT compression of PEFT task vectors: pure tensors in, bytes out.

Importing the package loads only its errors: `CompressedExpert` (the decoder: numpy and numba) is
loaded on first use, and `compeft_core.formats` holds plain constants, so the light client's wire
types and CLI start fast. `compeft_core.compress.compress` (torch) compresses;
`CompressedExpert.decompress` gives torch tensors and `CompressedExpert.decompress_numpy` numpy
arrays, for clients without torch.
"""

from typing import TYPE_CHECKING, Any

from compeft_core.errors import (
    AdapterFormatError,
    BlobFormatError,
    CompeftError,
    CompositionError,
    CompressionInputError,
)

if TYPE_CHECKING:
    from compeft_core.expert import CompressedExpert

__all__ = [
    "AdapterFormatError",
    "BlobFormatError",
    "CompeftError",
    "CompositionError",
    "CompressedExpert",
    "CompressionInputError",
]


def __getattr__(name: str) -> Any:
    """`compeft_core.CompressedExpert`, imported when first asked for (PEP 562)."""
    if name == "CompressedExpert":
        from compeft_core.expert import CompressedExpert

        return CompressedExpert
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
