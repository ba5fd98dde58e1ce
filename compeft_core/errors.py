"""One exception type per failure family; all are ValueErrors with messages meant for people."""


class CompeftError(ValueError):
    """Base class: the input (tensors, blob or adapter folder) cannot be used as given."""


class CompressionInputError(CompeftError):
    """Tensors or parameters given to `compress` are unusable (NaN, empty, bad density, ...)."""


class BlobFormatError(CompeftError):
    """Bytes that claim to be a ComPEFT blob are truncated, corrupted, inconsistent or unsupported."""


class AdapterFormatError(CompeftError):
    """A PEFT adapter folder or upload is malformed, unsafe (pickle) or unsupported."""


class CompositionError(CompeftError):
    """Experts cannot be composed or merged as asked (shapes differ, unsupported variant...)."""
