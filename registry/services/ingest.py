"""Turn received upload files into a compressed blob plus the facts a revision row records.

Pure CPU work on local files: no database, no blob store. Everything an upload can get wrong
about its content is detected here, before anything is written anywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compeft_core import CompressedExpert
from compeft_core.codec import MAX_NAME_CHARS, MAX_NDIM, MAX_PARAMS_PER_BLOB_BYTE
from compeft_core.codecs import codec_named
from compeft_core.compress import compress
from compeft_core.errors import AdapterFormatError, BlobFormatError, CompressionInputError
from compeft_core.formats import DEFAULT_CODEC
from compeft_core.peft_io import read_adapter
from compeft_core.task_vectors import adapter_task_vector
from registry.errors import (
    InvalidMetadataError,
    InvalidRequestError,
    describe_validation_errors,
)
from registry.services.answers import fidelity_summary
from registry.services.model_cards import ModelCard, read_model_card
from registry.settings import Settings
from registry.wire.common import Summary
from registry.wire.experts import FidelitySummary, UploadMetadata
from registry.wire.limits import BASE_MODEL_LENGTH


@dataclass(frozen=True)
class ReceivedUpload:
    """The three parts of an upload, each complete in its own file (the HTTP layer writes them)."""

    config_path: Path
    weights_path: Path
    metadata_path: Path
    model_card_path: Path | None = None  # the optional README.md


@dataclass(frozen=True)
class CompressedUpload:
    """A blob ready to store and everything its revision row will say about it."""

    blob: bytes
    blob_sha256: str
    original_bytes: int
    original_dtype: str
    num_params: int
    density: float
    scope: str
    factorisation: str
    scale: str
    codec: str
    value_bits: int
    sigma: Summary
    default_alpha: Summary
    fidelity: FidelitySummary
    base_model: str | None  # the upload's base_model, else the adapter's record
    recorded_base_model: str | None  # base_model_name_or_path in the adapter config
    peft_type: str
    rank: int | None
    lora_alpha: float | None
    target_modules: list[str]
    adapter_config_text: str
    model_card: str | None
    license: str | None  # the upload's, else the model card's
    datasets: list[str]  # the upload's, else the model card's
    metadata: UploadMetadata
    warnings: list[str]  # about the model card's front matter


def parse_metadata(path: Path) -> UploadMetadata:
    """The metadata part: InvalidRequestError if not JSON, InvalidMetadataError if invalid."""
    try:
        document = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting
        raise InvalidRequestError(f"the metadata part is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidRequestError("the metadata part must be a JSON object")
    try:
        return UploadMetadata.model_validate(document)
    except ValidationError as exc:
        message = describe_validation_errors(exc.errors(), what="invalid metadata")
        raise InvalidMetadataError(message) from exc


def compress_upload(
    received: ReceivedUpload, metadata: UploadMetadata, settings: Settings
) -> CompressedUpload:
    """Validate the adapter (compeft_core raises CompeftError subclasses), compress it with the
    upload's choices (the server's defaults where it made none) and measure its fidelity.
    The model card is read first: a card that is not text fails before any compression."""
    card = read_model_card(received.model_card_path) or ModelCard(text="")
    adapter = read_adapter(
        received.config_path, received.weights_path, max_tensors=settings.max_tensors
    )
    config_text = adapter.config_text
    recorded_base_model = _checked_base_model(adapter.base_model)
    expert = compress(
        adapter_task_vector(adapter),
        scope=metadata.scope or settings.default_scope,
        alpha=metadata.alpha,
        extra={"peft_config_sha256": hashlib.sha256(config_text.encode()).hexdigest()},
        measure_fidelity=True,
        **_compression_choices(metadata, settings),
    )
    blob = expert.to_bytes()
    _check_clients_can_decode(expert, blob)
    return CompressedUpload(
        blob=blob,
        blob_sha256=hashlib.sha256(blob).hexdigest(),
        original_bytes=received.weights_path.stat().st_size,
        original_dtype=adapter.dtype,
        num_params=adapter.num_params,
        density=expert.density,
        scope=expert.scope,
        factorisation=expert.factorisation,
        scale=expert.scale,
        codec=expert.codec,
        value_bits=expert.value_bits,
        sigma=Summary(**expert.metadata["sigma"]),
        default_alpha=Summary(**expert.metadata["alpha"]),
        fidelity=fidelity_summary(expert.fidelity.values()),
        base_model=metadata.base_model or recorded_base_model,
        recorded_base_model=recorded_base_model,
        peft_type=adapter.peft_type,
        rank=adapter.rank,
        lora_alpha=adapter.lora_alpha,
        target_modules=list(adapter.target_modules),
        adapter_config_text=config_text,
        model_card=card.text or None,
        license=metadata.license or card.license,
        datasets=card.datasets if metadata.datasets is None else metadata.datasets,
        metadata=metadata,
        warnings=card.warnings,
    )


def _compression_choices(metadata: UploadMetadata, settings: Settings) -> dict[str, Any]:
    """The codec and its choices: the upload's, else the server's defaults. The server's density,
    factorisation and scale defaults are ComPEFT's sign-only ones; another codec, or magnitude
    levels, take their own (a codec that fixes the density, BitDelta, keeps it)."""
    codec = codec_named(metadata.codec or settings.default_codec)
    signs_only = codec.name == DEFAULT_CODEC and not metadata.value_bits
    server_density = settings.default_density if codec.density is None else None
    return {
        "codec": codec.name,
        "value_bits": metadata.value_bits,
        "density": metadata.density or server_density,
        "factorisation": metadata.factorisation
        or (settings.default_factorisation if signs_only else None),
        "scale": metadata.scale or (settings.default_scale if signs_only else None),
    }


def _check_clients_can_decode(expert: CompressedExpert, blob: bytes) -> None:
    """Refuse a blob that the clients' decoder would refuse, before anything is stored.

    The decoder's limits (plausible size, dimensions, name lengths, finite scales) guard clients
    against hostile blobs; applying the decoder itself here keeps one definition of them.
    """
    try:
        CompressedExpert.from_bytes(blob)
    except BlobFormatError as exc:
        raise CompressionInputError(
            f"{_remedy(expert, len(blob))}: clients would refuse the compressed blob ({exc})"
        ) from exc


def _remedy(expert: CompressedExpert, blob_bytes: int) -> str:
    """What the uploader can change, for the decoder limits that an adapter can reach."""
    if expert.num_params > MAX_PARAMS_PER_BLOB_BYTE * blob_bytes:
        return (
            f"raise the density: at {expert.density:g} the {expert.num_params} parameters "
            f"compress to {blob_bytes} bytes, and the decoder accepts at most "
            f"{MAX_PARAMS_PER_BLOB_BYTE} parameters per blob byte"
        )
    if any(len(shape) > MAX_NDIM for shape in expert.shapes):
        return f"reshape the tensors to at most {MAX_NDIM} dimensions"
    if any(len(name) > MAX_NAME_CHARS for name in expert.names):
        return f"shorten the tensor names to at most {MAX_NAME_CHARS} characters"
    return "change the adapter or the upload's density, scope or alpha"


def _checked_base_model(base_model: str | None) -> str | None:
    """The base model id as indexed: bounded and printable (PostgreSQL text refuses NUL)."""
    if base_model is None:
        return None
    if len(base_model) > BASE_MODEL_LENGTH or not base_model.isprintable():
        raise AdapterFormatError(
            f"base_model_name_or_path must be printable and at most {BASE_MODEL_LENGTH} "
            f"characters, got {base_model[:80]!r}"
        )
    return base_model
