"""Reading and writing PEFT adapter folders (adapter_config.json + adapter_model.safetensors).

Everything read here may come from a stranger: sizes are bounded before reading, pickles are
refused (unpickling runs arbitrary code), and every problem is an AdapterFormatError that says
what is wrong in words a person understands.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from compeft_core.errors import AdapterFormatError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAME = "adapter_model.bin"
SUPPORTED_PEFT_TYPES = ("LORA", "IA3")
MAX_CONFIG_BYTES = 1 << 20
MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 100_000
MAX_PARAMS = 4_000_000_000
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_EXPONENT_BITS = {  # the integer view of each float dtype and its exponent field
    torch.float16: (torch.int16, 0x7C00),
    torch.bfloat16: (torch.int16, 0x7F80),
    torch.float32: (torch.int32, 0x7F80_0000),
    torch.float64: (torch.int64, 0x7FF0_0000_0000_0000),
}
_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
PICKLE_REFUSED = (
    "pickle files (adapter_model.bin) are refused: unpickling runs arbitrary code. "
    "Save the adapter with save_pretrained(..., safe_serialization=True) to get "
    "adapter_model.safetensors"
)


@dataclass(frozen=True)
class PeftAdapter:
    """A validated PEFT adapter: its config as uploaded and its tensors."""

    config: dict[str, Any]
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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting
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


def _target_modules(config: dict[str, Any]) -> list[str]:
    targets = config.get("target_modules")
    if targets is None:
        return []
    if isinstance(targets, str):
        return [targets]
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        return sorted(targets)
    raise AdapterFormatError(f"{CONFIG_NAME}: target_modules must be a string or list of strings")


def _number(config: dict[str, Any], key: str) -> float | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise AdapterFormatError(f"{CONFIG_NAME}: {key} must be a positive number, got {value!r}")
    return value


def _check_safetensors_header(path: Path) -> None:
    """Refuse pickles and absurd headers before handing the file to the safetensors parser."""
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


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    _check_safetensors_header(path)
    tensors: dict[str, torch.Tensor] = {}
    total = 0
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = list(handle.keys())
            if not names:
                raise AdapterFormatError(f"{WEIGHTS_NAME} holds no tensors")
            if len(names) > MAX_TENSORS:
                raise AdapterFormatError(f"{WEIGHTS_NAME} holds more than {MAX_TENSORS} tensors")
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


def _check_tensors(peft_type: str, tensors: dict[str, torch.Tensor]) -> None:
    marker = "ia3_l" if peft_type == "IA3" else "lora_"
    for name, tensor in tensors.items():
        if marker not in name:
            raise AdapterFormatError(
                f"{name}: not a {peft_type} adapter weight (full weights such as modules_to_save "
                "are not supported; upload only the adapter weights)"
            )
        if tensor.dtype not in _FLOAT_DTYPES:
            raise AdapterFormatError(f"{name}: dtype {tensor.dtype} is not a floating point type")
        if tensor.numel() == 0:
            raise AdapterFormatError(f"{name}: empty tensor")
        if not _all_finite(tensor):
            raise AdapterFormatError(f"{name}: contains NaN or infinite values")


def _check_lora_pairs(tensors: dict[str, torch.Tensor]) -> None:
    """Each lora_A must be (r, in) and its lora_B (out, r) with the same r."""
    for name, a in tensors.items():
        if ".lora_A." not in name:
            continue
        b = tensors.get(name.replace(".lora_A.", ".lora_B."))
        if b is None:
            raise AdapterFormatError(f"{name}: has no matching lora_B weight")
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise AdapterFormatError(
                f"{name}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not form a LoRA pair"
            )


def read_adapter(config_path: Path, weights_path: Path) -> PeftAdapter:
    """Read and validate an adapter from its two files."""
    config = parse_config(Path(config_path).read_bytes()[: MAX_CONFIG_BYTES + 1])
    tensors = _read_tensors(Path(weights_path))
    peft_type = config["peft_type"]
    _check_tensors(peft_type, tensors)
    rank = _number(config, "r")
    if peft_type == "LORA":
        _check_lora_pairs(tensors)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})
    base = config.get("base_model_name_or_path")
    return PeftAdapter(
        config=config,
        peft_type=peft_type,
        tensors=tensors,
        base_model=base if isinstance(base, str) and base else None,
        rank=int(rank) if rank is not None and peft_type == "LORA" else None,
        lora_alpha=_number(config, "lora_alpha") if peft_type == "LORA" else None,
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
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS_NAME),
              metadata={"format": "pt"})
    return folder
