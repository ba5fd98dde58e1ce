"""ComPEFT compression of PEFT task vectors: pure tensors in, bytes out."""

from compeft_core.compress import compress
from compeft_core.errors import (
    AdapterFormatError,
    BlobFormatError,
    CompeftError,
    CompositionError,
    CompressionInputError,
)
from compeft_core.expert import CompressedExpert

__all__ = [
    "AdapterFormatError",
    "BlobFormatError",
    "CompeftError",
    "CompositionError",
    "CompressedExpert",
    "CompressionInputError",
    "compress",
]
