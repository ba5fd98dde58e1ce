"""Adapters whose values or structure are hostile (issue 11, findings 3, 4 and 8): each upload
answers 422 with a message that names the problem, and leaves no revision row and no blob.

- Config numbers Python's json accepts but the hub cannot record: `r` or `lora_alpha` infinite,
  NaN, beyond float64 (1e400), beyond 64 bits, fractional, boolean, or integers too long to parse.
- float64 tensors whose values do not fit float32, the precision ComPEFT computes in.
- LoRA structure: every lora_A has its lora_B (and back), both 2-D with one rank; no DoRA
  magnitudes, no lora_B biases, no look-alike names; no duplicate keys in the safetensors header.
- Adapters that compress into a blob the clients' decoder would refuse (too low a density, too
  many dimensions, overlong names): the upload applies the decoder's limits before it stores.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from bench.adapter_files import DEFAULT_METADATA, AdapterFiles, lora_config, lora_tensors
from compeft_core import CompressionInputError
from compeft_core.codec import MAX_NAME_CHARS, MAX_NDIM
from registry.services.ingest import ReceivedUpload, compress_upload
from registry.settings import Settings
from registry.wire.experts import UploadMetadata
from tests.fixtures.registry import Hub
from tests.test_registry_hostile_uploads import (
    VALID,
    Hostile,
    assert_nothing_stored,
    blob_store_url,  # noqa: F401  (the fixture: a local folder is store enough here)
    with_tensor,
)

pytestmark = pytest.mark.usefixtures("no_leftover_upload_files")

MODULE = "base_model.model.model.layers.0.self_attn.q_proj"
LORA_A, LORA_B = f"{MODULE}.lora_A.weight", f"{MODULE}.lora_B.weight"
EMBEDDING = "base_model.model.model.embed_tokens"
IA3_CONFIG = {"peft_type": "IA3", "base_model_name_or_path": "tiny/llama"}


def config_with(key: str, literal: str) -> AdapterFiles:
    """The valid adapter whose config sets `key` to `literal`, JSON text written as it is."""
    text = json.dumps({**lora_config(), key: None}).replace(f'"{key}": null', f'"{key}": {literal}')
    return AdapterFiles(text.encode(), VALID.weights)


def lora_with(changes: dict[str, torch.Tensor | None]) -> AdapterFiles:
    """The valid LoRA tensors with some added, replaced or (None) removed, by name."""
    tensors = {**lora_tensors(), **changes}
    return AdapterFiles.of(lora_config(), {k: v for k, v in tensors.items() if v is not None})


def header_with_duplicate_key() -> bytes:
    """Valid weights whose JSON header names the first tensor twice (the parser keeps one)."""
    weights = VALID.weights
    (length,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8 : 8 + length])
    name = next(key for key in header if key != "__metadata__")
    text = f'{{"{name}": {json.dumps(header[name])}, {json.dumps(header)[1:]}'.encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + weights[8 + length :]


CONFIG_VALUES = {
    "r_infinity": ("r", "Infinity"),
    "r_nan": ("r", "NaN"),
    "r_beyond_float64": ("r", "1e400"),
    "r_huge_float": ("r", "1e308"),
    "r_beyond_int64": ("r", "9223372036854775808"),
    "r_beyond_int32": ("r", "2147483648"),
    "r_fraction": ("r", "4.5"),
    "r_whole_float": ("r", "4.0"),
    "r_bool": ("r", "true"),
    "r_string": ("r", '"4"'),
    "r_zero": ("r", "0"),
    "lora_alpha_infinity": ("lora_alpha", "Infinity"),
    "lora_alpha_minus_infinity": ("lora_alpha", "-Infinity"),
    "lora_alpha_nan": ("lora_alpha", "NaN"),
    "lora_alpha_beyond_float64": ("lora_alpha", "1e400"),
    "lora_alpha_integer_beyond_float64": ("lora_alpha", "1" + "0" * 400),
    "lora_alpha_zero": ("lora_alpha", "0"),
    "lora_alpha_bool": ("lora_alpha", "true"),
}

HOSTILE_VALUES = {
    **{
        case: Hostile(config_with(key, literal), message=f"{key} must be")
        for case, (key, literal) in CONFIG_VALUES.items()
    },
    "integer_too_long_to_parse": Hostile(config_with("r", "1" * 5000), message="not valid JSON"),
    "float64_beyond_float32": Hostile(
        with_tensor("lora_A", lambda a: a.double().index_fill(1, torch.tensor([3]), 1e300)),
        message=f"{LORA_A}: holds values beyond the float32 range",
    ),
    "lone_lora_b": Hostile(lora_with({LORA_A: None}), message="has no matching lora_A"),
    "lone_lora_a": Hostile(lora_with({LORA_B: None}), message="has no matching lora_B"),
    "lora_b_not_2d": Hostile(
        lora_with({LORA_B: torch.ones(16, 4, 1)}), message="do not form a LoRA pair"
    ),
    "nine_dimensional_look_alike": Hostile(
        lora_with({"x.lora_": torch.ones((2,) * 9)}), message="x.lora_: not a LoRA"
    ),
    "adapter_name_in_key": Hostile(
        lora_with({LORA_A: None, f"{MODULE}.lora_A.default.weight": torch.ones(4, 16)}),
        message="not a LoRA",
    ),
    "dora_magnitude": Hostile(
        lora_with({f"{MODULE}.lora_magnitude_vector": torch.ones(16)}), message="DoRA"
    ),
    "lora_b_bias": Hostile(lora_with({f"{MODULE}.lora_B.bias": torch.zeros(16)}), message="bias"),
    "embedding_pair_ranks_differ": Hostile(
        lora_with(
            {
                f"{EMBEDDING}.lora_embedding_A": torch.ones(4, 32),
                f"{EMBEDDING}.lora_embedding_B": torch.ones(8, 3),
            }
        ),
        message="do not form a LoRA pair",
    ),
    "duplicate_header_key": Hostile(
        AdapterFiles(VALID.config, header_with_duplicate_key()), message="more than once"
    ),
    "ia3_tensor_beyond_decoder_ndim": Hostile(
        AdapterFiles.of(IA3_CONFIG, {"x.ia3_l": torch.rand((2,) * (MAX_NDIM + 1))}),
        message=f"at most {MAX_NDIM} dimensions",
    ),
    "tensor_names_beyond_decoder_limit": Hostile(
        lora_with({f"{'m' * MAX_NAME_CHARS}.lora_{h}.weight": torch.ones(4, 4) for h in "AB"}),
        message=f"at most {MAX_NAME_CHARS} characters",
    ),
    "alpha_beyond_float32": Hostile(metadata={**DEFAULT_METADATA, "alpha": 1e39}, message="alpha"),
}


@pytest.mark.parametrize("case", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
def test_hostile_adapter_value_is_refused_and_leaves_nothing(hub: Hub, case: Hostile) -> None:
    response = hub.upload(
        "alice/victim", case.adapter, token=hub.token("alice"), metadata=case.metadata
    )
    assert response.status_code == case.status, response.text
    assert case.message in response.json()["detail"]
    assert_nothing_stored(hub)


def test_density_too_low_for_the_decoder_is_refused_with_advice(hub: Hub) -> None:
    alice = hub.token("alice")
    big = AdapterFiles.of(lora_config(), lora_tensors(width=125_000, dtype=torch.float16))
    metadata = {**DEFAULT_METADATA, "density": 1e-4}
    response = hub.upload("alice/victim", big, token=alice, metadata=metadata)
    assert response.status_code == 422, response.text
    assert "raise the density" in response.json()["detail"]
    assert_nothing_stored(hub)
    metadata["density"] = 1e-3
    assert hub.upload("alice/victim", big, token=alice, metadata=metadata).status_code == 201


@pytest.mark.parametrize("bad", [1e39, -1e39])
def test_alpha_beyond_float32_is_refused_whatever_the_schema_lets_through(
    tmp_path: Path, bad: float
) -> None:
    (tmp_path / "adapter_config.json").write_bytes(VALID.config)
    (tmp_path / "adapter_model.safetensors").write_bytes(VALID.weights)
    received = ReceivedUpload(
        tmp_path / "adapter_config.json", tmp_path / "adapter_model.safetensors", tmp_path / "m"
    )
    metadata = UploadMetadata.model_construct(**DEFAULT_METADATA, alpha=bad)
    with pytest.raises(CompressionInputError, match="alpha"):
        compress_upload(received, metadata, Settings(max_tensors=100))


def test_lora_of_linear_and_embedding_layers_is_accepted(hub: Hub) -> None:
    adapter = lora_with(
        {
            f"{EMBEDDING}.lora_embedding_A": torch.randn(4, 32),
            f"{EMBEDDING}.lora_embedding_B": torch.randn(16, 4),
        }
    )
    response = hub.upload("alice/embeddings", adapter, token=hub.token("alice"))
    assert response.status_code == 201, response.text
    assert hub.revision_count() == 1


def test_duplicate_header_key_is_what_the_safetensors_parser_alone_accepts() -> None:
    """Why the hub parses the header itself: the library loads the file, keeping one entry."""
    assert load(header_with_duplicate_key()).keys() == lora_tensors().keys()
