"""Reading and writing PEFT adapter folders (adapter_config.json + adapter_model.safetensors).

Everything read here may come from a stranger: sizes are bounded before reading, pickles are
refused (unpickling runs arbitrary code), and every problem is an AdapterFormatError that says
what is wrong in words a person understands.
"""

from __future__ import annotations

import json
import reprlib
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from compeft_core.codec import MAX_TENSORS
from compeft_core.compress import beyond_float32
from compeft_core.errors import AdapterFormatError
from compeft_core.formats import (
    CONFIG_NAME,
    FLOAT32_MAX,
    PICKLE_NAME,
    PICKLE_REFUSED,
    WEIGHTS_NAME,
)

SUPPORTED_PEFT_TYPES = ("LORA", "IA3")
MAX_CONFIG_BYTES = 1 << 20
MAX_HEADER_BYTES = 16 << 20
MAX_PARAMS = 4_000_000_000
MAX_RANK = 1 << 20  # far above any real LoRA; keeps `r` inside the registry's 32-bit rank column
IA3_SUFFIX = ".ia3_l"
# The (A, B) key suffixes peft saves for a LoRA module, A being (r, in) and B (out, r).
LORA_PAIRS = ((".lora_A.weight", ".lora_B.weight"), (".lora_embedding_A", ".lora_embedding_B"))
_REFUSED_LORA_PARTS = {
    "lora_magnitude_vector": "DoRA adapters (use_dora=True) are not supported: "
    "lora_magnitude_vector holds weight norms, not a change that ComPEFT can sparsify",
    ".lora_B.bias": "LoRA biases (lora_bias=True) are not supported: the hub composes and merges "
    "experts as their lora_A/lora_B pairs",
}
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_EXPONENT_BITS = {  # the integer view of each float dtype and its exponent field
    torch.float16: (torch.int16, 0x7C00),
    torch.bfloat16: (torch.int16, 0x7F80),
    torch.float32: (torch.int32, 0x7F80_0000),
    torch.float64: (torch.int64, 0x7FF0_0000_0000_0000),
}
_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class PeftAdapter:
    """A validated PEFT adapter: its config as uploaded (parsed, and verbatim) and its tensors."""

    config: dict[str, Any]
    config_text: str
    peft_type: str
    tensors: dict[str, torch.Tensor]
    base_model: str | None
    rank: int | None
    lora_alpha: float | None
    target_modules: list[str]
    dtype: str

    @property
    def num_params(self) -> int:
        """Number of adapter parameters."""
        return sum(t.numel() for t in self.tensors.values())


def parse_config(raw: bytes) -> dict[str, Any]:
    """Parse adapter_config.json bytes; the dict is kept verbatim (peft ignores unknown keys)."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise AdapterFormatError(f"{CONFIG_NAME} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also too many digits, deep nesting, not UTF-8
        raise AdapterFormatError(f"{CONFIG_NAME} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{CONFIG_NAME} must be a JSON object")
    peft_type = config.get("peft_type")
    if peft_type not in SUPPORTED_PEFT_TYPES:
        raise AdapterFormatError(
            f"{CONFIG_NAME}: peft_type {peft_type!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_PEFT_TYPES)}"
        )
    return config


def _utf8_text(raw: bytes) -> str:
    """The config as stored verbatim: JSON also parses from UTF-16 and UTF-32, text must be UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdapterFormatError(f"{CONFIG_NAME} is not UTF-8 text: {exc}") from exc


def _target_modules(config: dict[str, Any]) -> list[str]:
    targets = config.get("target_modules")
    if targets is None:
        return []
    if isinstance(targets, str):
        return [targets]
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        return sorted(targets)
    raise AdapterFormatError(f"{CONFIG_NAME}: target_modules must be a string or list of strings")


def _lora_rank(config: dict[str, Any]) -> int | None:
    """`r` as peft uses it: the size of nn.Linear layers, so a whole number (4.0 and true make
    torch refuse the layer), at most MAX_RANK so that the registry can record it."""
    value = config.get("r")
    if value is None:
        return None
    if type(value) is not int or not 0 < value <= MAX_RANK:
        raise AdapterFormatError(
            f"{CONFIG_NAME}: r must be a positive integer of at most {MAX_RANK}, "
            f"got {reprlib.repr(value)}"
        )
    return value


def _lora_alpha(config: dict[str, Any]) -> float | None:
    """`lora_alpha`, recorded as a float: positive and finite (peft scales by lora_alpha / r)."""
    value = config.get("lora_alpha")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (
            0 < value <= sys.float_info.max  # also refuses NaN, and integers beyond float64
        )
    ):
        raise AdapterFormatError(
            f"{CONFIG_NAME}: lora_alpha must be a positive finite number, got {reprlib.repr(value)}"
        )
    return float(value)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json.loads would keep the last silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise AdapterFormatError(
                f"{WEIGHTS_NAME}: the header names {reprlib.repr(key)} more than once"
            )
        result[key] = value
    return result


def _check_safetensors_header(path: Path) -> None:
    """Refuse pickles, absurd headers and repeated keys before the safetensors parser sees the file.

    The parser keeps one of two entries with the same name without a word, so which tensor
    (or dtype, or offsets) the hub would store is the parser's choice: such files are refused.
    """
    with open(path, "rb") as handle:
        head = handle.read(8)
        if head.startswith(_PICKLE_MAGICS):
            raise AdapterFormatError(PICKLE_REFUSED)
        if len(head) < 8:
            raise AdapterFormatError(f"{WEIGHTS_NAME} is truncated ({len(head)} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER_BYTES or header_len + 8 > path.stat().st_size:
            raise AdapterFormatError(
                f"{WEIGHTS_NAME} is not a safetensors file or is truncated "
                f"(header claims {header_len} bytes, file has {path.stat().st_size})"
            )
        header = handle.read(header_len)
    try:
        json.loads(header, object_pairs_hook=_unique_keys)
    except AdapterFormatError:
        raise
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
        raise AdapterFormatError(f"{WEIGHTS_NAME} header is not valid JSON: {exc}") from exc


def _read_tensors(path: Path, max_tensors: int) -> dict[str, torch.Tensor]:
    _check_safetensors_header(path)
    tensors: dict[str, torch.Tensor] = {}
    total = 0
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = list(handle.keys())
            if not names:
                raise AdapterFormatError(f"{WEIGHTS_NAME} holds no tensors")
            if len(names) > max_tensors:  # before any tensor is read
                raise AdapterFormatError(
                    f"{WEIGHTS_NAME} holds {len(names)} tensors; the limit is {max_tensors}"
                )
            for name in names:
                shape = handle.get_slice(name).get_shape()
                total += int(torch.Size(shape).numel())
                if total > MAX_PARAMS:
                    raise AdapterFormatError(f"{WEIGHTS_NAME} has more than {MAX_PARAMS} values")
                tensors[name] = handle.get_tensor(name)
    except AdapterFormatError:
        raise
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise AdapterFormatError(f"{WEIGHTS_NAME} is not a valid safetensors file: {exc}") from exc
    return tensors


def _all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or infinity (exactly the values whose exponent bits are all ones).

    Checked on the bits with numpy in the calling thread: `torch.isfinite` on float16 is ~10x
    slower, and torch's thread pool stalls when the machine's cores are busy with other work.
    """
    int_dtype, exponent = _EXPONENT_BITS[tensor.dtype]
    bits = tensor.contiguous().view(int_dtype).numpy()
    return not ((bits & exponent) == exponent).any()


def _fits_float32(tensor: torch.Tensor) -> bool:
    """Every (finite) value within float32's range: ComPEFT computes and stores in float32."""
    if tensor.dtype != torch.float64:
        return True  # float16, bfloat16 and float32 cannot exceed it
    values = tensor.contiguous().numpy()
    return bool(-FLOAT32_MAX <= values.min() and values.max() <= FLOAT32_MAX)


def _check_values(tensors: dict[str, torch.Tensor]) -> None:
    """Floating point, non-empty, finite and within float32: what `compress` can take."""
    for name, tensor in tensors.items():
        if tensor.dtype not in _FLOAT_DTYPES:
            raise AdapterFormatError(f"{name}: dtype {tensor.dtype} is not a floating point type")
        if tensor.numel() == 0:
            raise AdapterFormatError(f"{name}: empty tensor")
        if not _all_finite(tensor):
            raise AdapterFormatError(f"{name}: contains NaN or infinite values")
        if not _fits_float32(tensor):
            raise AdapterFormatError(beyond_float32(name))


def _not_adapter_weight(name: str, peft_type: str, expected: str) -> AdapterFormatError:
    """The refusal of a tensor whose name is none of the adapter keys peft saves."""
    return AdapterFormatError(
        f"{name}: not a {peft_type} adapter weight (peft saves {expected}; full weights such as "
        "modules_to_save are not supported: upload only the adapter weights)"
    )


def _check_ia3_names(tensors: dict[str, torch.Tensor]) -> None:
    """Only (IA)^3 scaling vectors: everything else would be compressed as if it were one."""
    for name in tensors:
        if not name.endswith(IA3_SUFFIX):
            raise _not_adapter_weight(name, "IA3", f"<module>{IA3_SUFFIX}")


def _lora_pair(name: str) -> tuple[str, str]:
    """The names of the lora_A and lora_B weights of the module whose weight `name` is."""
    for a_suffix, b_suffix in LORA_PAIRS:
        for suffix in (a_suffix, b_suffix):
            if name.endswith(suffix) and len(name) > len(suffix):
                module = name[: -len(suffix)]
                return module + a_suffix, module + b_suffix
    refusal = next((why for part, why in _REFUSED_LORA_PARTS.items() if part in name), None)
    if refusal is not None:
        raise AdapterFormatError(f"{name}: {refusal}")
    expected = " or ".join(f"<module>{suffix}" for pair in LORA_PAIRS for suffix in pair)
    raise _not_adapter_weight(name, "LoRA", expected)


def _check_lora_pairs(tensors: dict[str, torch.Tensor]) -> None:
    """Every lora_A has its lora_B and back: A is (r, in), B is (out, r), with the same r."""
    for name in tensors:
        a_name, b_name = _lora_pair(name)
        partner = b_name if name == a_name else a_name
        if partner not in tensors:
            half = partner.rsplit(".lora_", 1)[1].removesuffix(".weight")
            raise AdapterFormatError(f"{name}: has no matching lora_{half} weight")
        if name != a_name:
            continue
        a, b = tensors[a_name], tensors[b_name]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise AdapterFormatError(
                f"{name}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not form a LoRA pair "
                "((r, in) and (out, r))"
            )


def read_adapter(
    config_path: Path, weights_path: Path, *, max_tensors: int = MAX_TENSORS
) -> PeftAdapter:
    """Read and validate an adapter from its two files; each is read once.

    `max_tensors` (the blob format's MAX_TENSORS unless the caller allows fewer) is checked
    before any tensor is loaded.
    """
    raw_config = Path(config_path).read_bytes()[: MAX_CONFIG_BYTES + 1]
    config = parse_config(raw_config)
    config_text = _utf8_text(raw_config)
    peft_type = config["peft_type"]
    is_lora = peft_type == "LORA"
    rank, lora_alpha = (_lora_rank(config), _lora_alpha(config)) if is_lora else (None, None)
    tensors = _read_tensors(Path(weights_path), max_tensors)
    _check_values(tensors)
    if is_lora:
        _check_lora_pairs(tensors)
    else:
        _check_ia3_names(tensors)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})
    base = config.get("base_model_name_or_path")
    return PeftAdapter(
        config=config,
        config_text=config_text,
        peft_type=peft_type,
        tensors=tensors,
        base_model=base if isinstance(base, str) and base else None,
        rank=rank,
        lora_alpha=lora_alpha,
        target_modules=_target_modules(config),
        dtype=",".join(dtypes),
    )


def read_adapter_folder(folder: Path) -> PeftAdapter:
    """Read a folder written by `save_pretrained`; refuses pickled weights."""
    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).exists() and (folder / PICKLE_NAME).exists():
        raise AdapterFormatError(PICKLE_REFUSED)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise AdapterFormatError(f"{folder} has no {name}")
    return read_adapter(folder / CONFIG_NAME, folder / WEIGHTS_NAME)


def write_adapter_folder(
    folder: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> Path:
    """Write a folder that `peft.PeftModel.from_pretrained(base, folder)` loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(folder / WEIGHTS_NAME),
        metadata={"format": "pt"},
    )
    return folder
