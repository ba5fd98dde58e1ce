"""The blob: a safetensors file holding the coded streams of a CompressedExpert.

Layout (docs/blob-format.md is the specification):
- tensor `index`  (U8): zlib-compressed JSON of the tensor names (as templates with their numbers
  factored out, so "layers.7.q_proj" costs a few bits), shapes and original dtypes
- tensor `mask`   (U8): rANS words (little-endian uint32) coding the packed keep-mask
- tensor `signs`  (U8): one bit per kept entry in position order, set = negative
- tensor `levels` (U8, version 3): `value_bits` magnitude bits per kept entry (compeft_core.levels)
- tensor `scales` (F32, shape [2, segments]): sigma, then default alpha, per segment
- `__metadata__`: format, version, codec (the mask code), scope, density, params, kept, crc32,
  factorisation, scale (version 2 on), method and value_bits (version 3), and extra keys.
ComPEFT blobs are written as version 2, byte for byte as before; the other codecs
(compeft_core.codecs) as version 3. Version 1 blobs (no factorisation, no scale) still decode,
bit-identically: they are "as-trained" with the "entry" scale (or "fixed", which v1 cannot say).

Decoding treats the bytes as hostile: every size is bounded before anything is allocated and
every failure is a BlobFormatError.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from math import prod

import numpy as np
import safetensors
import safetensors.numpy

from compeft_core.codecs import CODECS
from compeft_core.errors import BlobFormatError
from compeft_core.expert import SCOPES, STORED_SCALES, CompressedExpert
from compeft_core.formats import DEFAULT_CODEC, MAX_VALUE_BITS
from compeft_core.levels import packed_level_bytes
from compeft_core.lora_gauge import FACTORISATIONS

FORMAT = "compeft"
VERSION = "2"
VALUED_VERSION = "3"  # the first with `method`, `value_bits` and the `levels` tensor
READABLE_VERSIONS = ("1", "2", "3")
CODEC = "rans8-v1"
MAX_HEADER_BYTES = 1 << 20
MAX_INDEX_BYTES = 64 << 20
MAX_TENSORS = 100_000
MAX_NAME_CHARS = 1024
MAX_NDIM = 8
# A declared size is only believed when the blob is big enough to code it at densities >= ~3e-4,
# so a small hostile blob cannot make the decoder allocate gigabytes.
MAX_PARAMS_PER_BLOB_BYTE = 2000
INPUT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_DTYPE_NAMES = {"|u1": "U8", "<f4": "F32"}
_RESERVED = (
    "format",
    "version",
    "codec",
    "scope",
    "density",
    "params",
    "kept",
    "streams",
    "crc32",
    "factorisation",
    "scale",
    "method",
    "value_bits",
)
TENSORS = ("index", "mask", "signs", "scales")
VALUED_TENSORS = ("index", "mask", "signs", "levels", "scales")
MAX_STREAMS_TEXT = 64 * 21


_NUMBER = re.compile(r"(0|[1-9][0-9]{0,14})")


def _factor_names(names: tuple[str, ...]) -> dict:
    """Names as templates (text between numbers) + template ids + number columns.

    Every string round-trips: only canonical decimal numbers (no leading zeros) are factored out.
    """
    templates: dict[tuple[str, ...], int] = {}
    ids, numbers = [], []
    for name in names:
        parts = _NUMBER.split(name)
        ids.append(templates.setdefault(tuple(parts[0::2]), len(templates)))
        numbers.append([int(p) for p in parts[1::2]])
    return {"templates": [list(t) for t in templates], "ids": ids, "numbers": numbers}


def _expand_names(packed: dict) -> list[str]:
    templates, ids, numbers = packed.get("templates"), packed.get("ids"), packed.get("numbers")
    if not (
        isinstance(templates, list)
        and isinstance(ids, list)
        and isinstance(numbers, list)
        and len(ids) == len(numbers)
        and len(ids) <= MAX_TENSORS
    ):
        raise BlobFormatError("blob index has malformed tensor names")
    names = []
    for template_id, row in zip(ids, numbers, strict=True):
        if type(template_id) is not int or not 0 <= template_id < len(templates):
            raise BlobFormatError("blob index refers to an unknown name template")
        pieces = templates[template_id]
        if not (
            isinstance(pieces, list)
            and isinstance(row, list)
            and len(pieces) == len(row) + 1
            and all(isinstance(p, str) for p in pieces)
            and all(type(n) is int and 0 <= n < 10**15 for n in row)
        ):
            raise BlobFormatError("blob index has a malformed tensor name")
        names.append(pieces[0] + "".join(f"{n}{p}" for n, p in zip(row, pieces[1:], strict=True)))
    return names


def _tensor_names(version: str) -> tuple[str, ...]:
    """The blob's tensors, in data order, for a blob of `version`."""
    return VALUED_TENSORS if version == VALUED_VERSION else TENSORS


def _checksum(metadata: dict[str, str], arrays: dict[str, np.ndarray]) -> str:
    """CRC32 over the canonical metadata (without the crc itself) and every tensor's bytes."""
    canonical = json.dumps({k: v for k, v in metadata.items() if k != "crc32"}, sort_keys=True)
    crc = zlib.crc32(canonical.encode())
    for name in _tensor_names(metadata["version"]):
        crc = zlib.crc32(np.ascontiguousarray(arrays[name]).view(np.uint8), crc)
    return f"{crc:08x}"


def encode_blob(expert: CompressedExpert) -> bytes:
    """Serialize an expert; deterministic (same expert, same bytes, same sha256)."""
    index = json.dumps(
        {
            "names": _factor_names(expert.names),
            "shapes": [list(s) for s in expert.shapes],
            "dtypes": list(expert.dtypes),
        },
        separators=(",", ":"),
    ).encode()
    arrays = {
        "index": np.frombuffer(zlib.compress(index, 9), dtype=np.uint8),
        "mask": np.ascontiguousarray(expert.mask_words, dtype="<u4").view(np.uint8),
        "signs": np.ascontiguousarray(expert.signs, dtype=np.uint8),
        "scales": np.stack([expert.sigma, expert.alpha]).astype("<f4"),
    }
    valued = expert.codec != DEFAULT_CODEC or expert.value_bits > 0
    metadata = {
        **expert.extra,
        "format": FORMAT,
        "version": VALUED_VERSION if valued else VERSION,
        "codec": CODEC,
        "scope": expert.scope,
        "density": repr(float(expert.density)),
        "params": str(expert.num_params),
        "kept": str(expert.kept),
        "streams": ",".join(map(str, expert.mask_streams)),
        "factorisation": expert.factorisation,
        "scale": expert.scale,
    }
    if valued:
        metadata |= {"method": expert.codec, "value_bits": str(expert.value_bits)}
        arrays["levels"] = np.ascontiguousarray(expert.levels, dtype=np.uint8)
    metadata["crc32"] = _checksum(metadata, arrays)
    return _safetensors_bytes(arrays, metadata)


def _safetensors_bytes(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """A safetensors file with a canonical header (sorted keys, fixed tensor order).

    The safetensors library orders metadata through a hash map, so its output is not
    reproducible across processes; content addressing needs identical bytes for identical input.
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    names = _tensor_names(metadata["version"])
    offset = 0
    for name in names:
        size = arrays[name].nbytes
        header[name] = {
            "dtype": _DTYPE_NAMES[arrays[name].dtype.str],
            "shape": list(arrays[name].shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    parts = [struct.pack("<Q", len(text)), text]
    parts += [np.ascontiguousarray(arrays[n]).tobytes() for n in names]
    return b"".join(parts)


def _read_header(data: bytes) -> dict:
    if len(data) < 8:
        raise BlobFormatError(f"not a ComPEFT blob: {len(data)} bytes is too short for a header")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(data):
        raise BlobFormatError(
            f"not a ComPEFT blob or truncated: header claims {header_len} bytes, "
            f"blob has {len(data)}"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting
        raise BlobFormatError(f"blob header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise BlobFormatError("blob header has no __metadata__: not a ComPEFT blob")
    return header


def _check_metadata(meta: dict) -> tuple[int, int, str, float]:
    if meta.get("format") != FORMAT:
        raise BlobFormatError(f"not a ComPEFT blob (format {meta.get('format')!r})")
    if meta.get("version") not in READABLE_VERSIONS or meta.get("codec") != CODEC:
        raise BlobFormatError(
            f"unsupported blob version {meta.get('version')!r} / codec {meta.get('codec')!r}; "
            f"this library reads versions {', '.join(READABLE_VERSIONS)} with codec {CODEC}: "
            "upgrade compeft-hub"
        )
    if meta.get("scope") not in SCOPES:
        raise BlobFormatError(f"blob has an unknown scope {meta.get('scope')!r}")
    try:
        params, kept, density = int(meta["params"]), int(meta["kept"]), float(meta["density"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BlobFormatError(f"blob metadata is incomplete or malformed: {exc}") from exc
    if not (0 < params and 0 <= kept <= params and 0 < density <= 1):
        raise BlobFormatError(
            f"blob metadata is inconsistent: params={params} kept={kept} density={density}"
        )
    return params, kept, meta["scope"], density


def _load_arrays(data: bytes, version: str) -> dict[str, np.ndarray]:
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as exc:  # the Rust parser raises its own error types
        raise BlobFormatError(f"blob is not a valid safetensors file: {exc}") from exc
    expected = {
        name: np.float32 if name == "scales" else np.uint8 for name in _tensor_names(version)
    }
    if set(arrays) != set(expected):
        raise BlobFormatError(f"blob tensors are {sorted(arrays)}, expected {sorted(expected)}")
    for name, dtype in expected.items():
        if arrays[name].dtype != dtype:
            raise BlobFormatError(f"blob tensor {name!r} has dtype {arrays[name].dtype}")
    return arrays


def _inflate_index(packed: np.ndarray) -> dict:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed.tobytes(), MAX_INDEX_BYTES)
    except zlib.error as exc:
        raise BlobFormatError(f"blob index is corrupted: {exc}") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        raise BlobFormatError("blob index is truncated or larger than allowed")
    try:
        index = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting
        raise BlobFormatError(f"blob index is not valid JSON: {exc}") from exc
    if not isinstance(index, dict):
        raise BlobFormatError("blob index is not a JSON object")
    return index


def _check_index(
    index: dict,
) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...], tuple[str, ...]]:
    if not isinstance(index.get("names"), dict):
        raise BlobFormatError("blob index lacks the tensor names")
    names, shapes, dtypes = _expand_names(index["names"]), index.get("shapes"), index.get("dtypes")
    if not (isinstance(shapes, list) and isinstance(dtypes, list)):
        raise BlobFormatError("blob index lacks names, shapes or dtypes lists")
    if not (0 < len(names) <= MAX_TENSORS and len(names) == len(shapes) == len(dtypes)):
        raise BlobFormatError(
            f"blob index lists {len(names)} names, {len(shapes)} shapes, {len(dtypes)} dtypes"
        )
    if len(set(names)) != len(names) or not all(
        isinstance(n, str) and 0 < len(n) <= MAX_NAME_CHARS for n in names
    ):
        raise BlobFormatError("blob index has empty, overlong or duplicate tensor names")
    for shape in shapes:
        if not (
            isinstance(shape, list)
            and len(shape) <= MAX_NDIM
            and all(type(d) is int and 0 < d < 1 << 40 for d in shape)
        ):
            raise BlobFormatError(f"blob index has an invalid shape {str(shape)[:80]}")
    if not all(d in INPUT_DTYPES for d in dtypes):
        raise BlobFormatError("blob index has an unknown dtype")
    return tuple(names), tuple(tuple(s) for s in shapes), tuple(dtypes)


def _compression_choices(meta: dict) -> tuple[str, str]:
    """(factorisation, scale): recorded from version 2 on; version 1 knew only the paper's."""
    if meta["version"] == "1":
        return "as-trained", "entry"
    factorisation, scale = meta.get("factorisation"), meta.get("scale")
    if factorisation not in FACTORISATIONS:
        raise BlobFormatError(
            f"blob has an unknown factorisation {str(factorisation)[:40]!r}; "
            f"this library knows {', '.join(FACTORISATIONS)}"
        )
    if scale not in STORED_SCALES:
        raise BlobFormatError(
            f"blob has an unknown scale {str(scale)[:40]!r}; this library "
            f"knows {', '.join(STORED_SCALES)}"
        )
    return factorisation, scale


def _codec_choice(meta: dict) -> tuple[str, int]:
    """(codec, value bits): recorded from version 3 on; earlier blobs are ComPEFT's signs."""
    if meta["version"] != VALUED_VERSION:
        return DEFAULT_CODEC, 0
    method, bits = meta.get("method"), meta.get("value_bits")
    if method not in CODECS:
        raise BlobFormatError(
            f"blob has an unknown codec {str(method)[:40]!r}; this library knows "
            f"{', '.join(CODECS)}: upgrade compeft-hub"
        )
    if bits not in [str(b) for b in range(MAX_VALUE_BITS + 1)]:
        raise BlobFormatError(
            f"blob has invalid value_bits {str(bits)[:40]!r}; expected 0 to {MAX_VALUE_BITS}"
        )
    return method, int(bits)


def _stream_words(meta: dict) -> tuple[int, ...]:
    text = meta.get("streams")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_STREAMS_TEXT:
        raise BlobFormatError("blob metadata lacks the mask stream lengths")
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise BlobFormatError(f"blob mask stream lengths are malformed: {text[:40]!r}") from exc


def decode_blob(data: bytes) -> CompressedExpert:
    """Parse and validate a blob (entropy decoding happens later, in `decompress`)."""
    data = bytes(data)
    meta = _read_header(data)["__metadata__"]
    params, kept, scope, density = _check_metadata(meta)
    factorisation, scale = _compression_choices(meta)
    codec, value_bits = _codec_choice(meta)
    if params > MAX_PARAMS_PER_BLOB_BYTE * len(data):
        raise BlobFormatError(
            f"blob declares {params} parameters, implausibly many for {len(data)} bytes"
        )
    arrays = _load_arrays(data, meta["version"])
    if _checksum(meta, arrays) != meta.get("crc32"):
        raise BlobFormatError("blob checksum mismatch: the blob is corrupted")
    names, shapes, dtypes = _check_index(_inflate_index(arrays["index"]))
    if sum(prod(s) for s in shapes) != params:
        raise BlobFormatError("blob index shapes do not add up to the declared parameter count")
    segments = len(names) if scope == "tensor" else 1
    scales = arrays["scales"]
    if scales.shape != (2, segments) or not np.isfinite(scales).all() or (scales[0] < 0).any():
        raise BlobFormatError(
            f"blob scales have shape {scales.shape} or invalid values; "
            f"expected (2, {segments}) finite values with sigma >= 0"
        )
    mask = arrays["mask"]
    if mask.size % 4 or mask.size < 8:
        raise BlobFormatError("blob mask stream is truncated")
    if arrays["signs"].size != (kept + 7) // 8:
        raise BlobFormatError(f"blob carries {arrays['signs'].size} sign bytes for {kept} entries")
    levels = arrays.get("levels", np.zeros(0, dtype=np.uint8))
    if levels.size != packed_level_bytes(kept, value_bits):
        raise BlobFormatError(
            f"blob carries {levels.size} level bytes for {kept} entries of {value_bits} bits"
        )
    return CompressedExpert(
        names=names,
        shapes=shapes,
        dtypes=dtypes,
        scope=scope,
        density=density,
        sigma=scales[0].copy(),
        alpha=scales[1].copy(),
        mask_words=mask.view("<u4").astype(np.uint32),
        mask_streams=_stream_words(meta),
        signs=arrays["signs"],
        kept=kept,
        extra={k: v for k, v in meta.items() if k not in _RESERVED},
        factorisation=factorisation,
        scale=scale,
        codec=codec,
        value_bits=value_bits,
        levels=levels,
    )
