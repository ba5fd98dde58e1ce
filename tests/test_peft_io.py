"""PEFT folders in and out, with real peft on a tiny LLaMA, and hostile adapter files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from compeft_core import AdapterFormatError
from compeft_core.compress import compress
from compeft_core.export import export_adapter
from compeft_core.peft_io import read_adapter, read_adapter_folder
from compeft_core.task_vectors import adapter_task_vector, residual_task_vector
from tests.compeft_reference import reference_decompress

TINY = LlamaConfig(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
)


def tiny_base(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(TINY).eval()


def save_trained_adapter(folder: Path, peft_config, seed: int = 1) -> None:
    """A peft adapter whose weights moved away from their init (as after training)."""
    model = get_peft_model(tiny_base(), peft_config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)


@pytest.fixture
def lora_folder(tmp_path):
    save_trained_adapter(
        tmp_path / "lora", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    return tmp_path / "lora"


@pytest.fixture
def ia3_folder(tmp_path):
    save_trained_adapter(
        tmp_path / "ia3",
        IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"]),
    )
    return tmp_path / "ia3"


def loaded_adapter_weights(model: PeftModel) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n or "ia3_" in n
    }


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_lora_folder_round_trips_into_peft(lora_folder, tmp_path, scope):
    adapter = read_adapter_folder(lora_folder)
    assert adapter.peft_type == "LORA" and adapter.rank == 4 and adapter.lora_alpha == 8
    assert adapter.target_modules == ["q_proj", "v_proj"]
    expert = compress(adapter_task_vector(adapter), 0.25, scope)
    out = export_adapter(expert, adapter.config, tmp_path / "export")

    model = PeftModel.from_pretrained(tiny_base(), out)
    expected = reference_decompress(
        adapter.tensors,
        0.25,
        scope,
        None,
        torch.float32,
        factorisation="balanced",
        scale="unbiased",
    )
    weights = loaded_adapter_weights(model)
    assert len(weights) == len(expected) == 8
    for saved_name, value in expected.items():
        loaded = next(v for k, v in weights.items() if k.replace(".default", "") == saved_name)
        torch.testing.assert_close(loaded, value, rtol=1e-5, atol=0)  # SVDs differ in last bits
    tokens = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert not torch.equal(model(tokens).logits, tiny_base()(tokens).logits)


def test_ia3_is_compressed_relative_to_ones_and_restored(ia3_folder, tmp_path):
    adapter = read_adapter_folder(ia3_folder)
    assert adapter.peft_type == "IA3"
    deltas = adapter_task_vector(adapter)
    for name, vector in adapter.tensors.items():
        assert torch.equal(deltas[name], vector - 1)
    expert = compress(deltas, 0.5)
    model = PeftModel.from_pretrained(
        tiny_base(), export_adapter(expert, adapter.config, tmp_path / "out")
    )
    expected = reference_decompress(deltas, 0.5, "tensor", None, torch.float32)
    for name, value in loaded_adapter_weights(model).items():
        saved = name.replace(".default", "")
        assert torch.equal(value, expected[saved] + 1)


def test_pickled_adapter_is_refused_with_the_reason(tmp_path):
    model = get_peft_model(tiny_base(), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "adapter_model.bin").exists()
    with pytest.raises(AdapterFormatError, match="unpickling runs arbitrary code"):
        read_adapter_folder(tmp_path)


def test_pickle_renamed_to_safetensors_is_refused(lora_folder):
    torch.save({"a": torch.ones(2)}, lora_folder / "adapter_model.safetensors")
    with pytest.raises(AdapterFormatError, match="pickle"):
        read_adapter_folder(lora_folder)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"peft_type": "PROMPT_TUNING"}', "not supported"),
        (b'{"r": 8}', "not supported"),
        (b'{"peft_type": "LORA", "r": -1}', "r must be a positive integer"),
        (b'{"peft_type": "LORA", "r": Infinity}', "r must be a positive integer"),
        (b'{"peft_type": "LORA", "r": 4.0}', "r must be a positive integer"),
        (b'{"peft_type": "LORA", "r": 2147483648}', "r must be a positive integer"),
        (b'{"peft_type": "LORA", "lora_alpha": NaN}', "lora_alpha must be a positive finite"),
        (b'{"peft_type": "LORA", "lora_alpha": 1e400}', "lora_alpha must be a positive finite"),
        (b'{"peft_type": "LORA", "r": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"peft_type": "LORA", "target_modules": 5}', "target_modules"),
    ],
)
def test_malformed_config_is_refused(lora_folder, config, message):
    (lora_folder / "adapter_config.json").write_bytes(config)
    with pytest.raises(AdapterFormatError, match=message):
        read_adapter_folder(lora_folder)


def _write_weights(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(tensors, str(folder / "adapter_model.safetensors"))


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (
            {
                "x.lora_A.weight": torch.tensor([[float("nan")]]),
                "x.lora_B.weight": torch.ones(1, 1),
            },
            "NaN",
        ),
        ({"x.lora_A.weight": torch.ones(2, 3)}, "no matching lora_B"),
        ({"x.lora_B.weight": torch.ones(3, 2)}, "no matching lora_A"),
        ({"x.lora_": torch.ones((1,) * 9)}, "not a LoRA adapter weight"),
        (
            {
                "x.lora_A.weight": torch.ones(2, 3),
                "x.lora_B.weight": torch.ones(3, 2),
                "x.lora_magnitude_vector": torch.ones(3),
            },
            "DoRA",
        ),
        (
            {
                "x.lora_A.weight": torch.tensor([[1e300]], dtype=torch.float64),
                "x.lora_B.weight": torch.ones(1, 1, dtype=torch.float64),
            },
            "x.lora_A.weight: holds values beyond the float32 range",
        ),
        (
            {"x.lora_A.weight": torch.ones(2, 3), "x.lora_B.weight": torch.ones(3, 4)},
            "do not form a LoRA pair",
        ),
        ({"model.embed_tokens.weight": torch.ones(4, 4)}, "modules_to_save"),
        ({"x.lora_A.weight": torch.ones(2, 3, dtype=torch.int32)}, "not a floating point"),
    ],
)
def test_bad_adapter_tensors_are_refused(lora_folder, tensors, message):
    _write_weights(lora_folder, tensors)
    with pytest.raises(AdapterFormatError, match=message):
        read_adapter_folder(lora_folder)


FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_in_every_float_dtype(lora_folder, dtype, bad):
    a = torch.randn(2, 300).to(dtype)
    a[1, 257] = bad
    _write_weights(
        lora_folder, {"x.lora_A.weight": a, "x.lora_B.weight": torch.ones(3, 2, dtype=dtype)}
    )
    with pytest.raises(AdapterFormatError, match="NaN or infinite"):
        read_adapter_folder(lora_folder)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_extreme_values_that_float32_holds_are_accepted(lora_folder, dtype):
    info = torch.finfo(dtype)
    largest = min(info.max, torch.finfo(torch.float32).max)  # ComPEFT computes in float32
    extremes = torch.tensor([[largest, -largest, info.tiny, info.tiny / 4, 0.0, -0.0]], dtype=dtype)
    _write_weights(
        lora_folder, {"x.lora_A.weight": extremes, "x.lora_B.weight": torch.ones(3, 1, dtype=dtype)}
    )
    assert read_adapter_folder(lora_folder).num_params == 9


@pytest.mark.parametrize("cut", [0, 5, 8, 40, -10])
def test_truncated_safetensors_is_refused(lora_folder, cut):
    path = lora_folder / "adapter_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(AdapterFormatError):
        read_adapter_folder(lora_folder)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(AdapterFormatError, match="adapter_config.json"):
        read_adapter_folder(tmp_path)


def test_residual_task_vector_is_finetuned_minus_base(tmp_path):
    base, tuned = tiny_base(0), tiny_base(1)
    save_file(base.state_dict(), str(tmp_path / "base.safetensors"))
    save_file(tuned.state_dict(), str(tmp_path / "tuned.safetensors"))
    residual = residual_task_vector(tmp_path / "tuned.safetensors", tmp_path / "base.safetensors")
    base_state, tuned_state = base.state_dict(), tuned.state_dict()
    assert residual.keys() == tuned_state.keys()
    for name, delta in residual.items():
        assert torch.equal(delta, tuned_state[name] - base_state[name])


def test_residual_task_vector_refuses_mismatched_models(tmp_path):
    save_file({"w": torch.ones(2, 2)}, str(tmp_path / "base.safetensors"))
    save_file({"w": torch.ones(2, 3)}, str(tmp_path / "tuned.safetensors"))
    with pytest.raises(AdapterFormatError, match="differs from base"):
        residual_task_vector(tmp_path / "tuned.safetensors", tmp_path / "base.safetensors")
    save_file({"v": torch.ones(2)}, str(tmp_path / "tuned.safetensors"))
    with pytest.raises(AdapterFormatError, match="not in base"):
        residual_task_vector(tmp_path / "tuned.safetensors", tmp_path / "base.safetensors")


def test_exported_config_is_the_uploaded_config(lora_folder, tmp_path):
    adapter = read_adapter_folder(lora_folder)
    out = export_adapter(
        compress(adapter_task_vector(adapter), 0.1), adapter.config, tmp_path / "o"
    )
    assert json.loads((out / "adapter_config.json").read_text()) == adapter.config


def test_the_tensor_limit_refuses_before_reading_and_the_config_is_kept_verbatim(lora_folder):
    config = lora_folder / "adapter_config.json"
    weights = lora_folder / "adapter_model.safetensors"
    count = len(read_adapter(config, weights).tensors)
    with pytest.raises(AdapterFormatError, match=f"holds {count} tensors; the limit is 2"):
        read_adapter(config, weights, max_tensors=2)
    assert read_adapter(config, weights).config_text == config.read_text()

    config.write_bytes(config.read_text().encode("utf-16"))  # JSON parses it, storage would not
    with pytest.raises(AdapterFormatError, match="adapter_config.json is not UTF-8 text"):
        read_adapter(config, weights)
