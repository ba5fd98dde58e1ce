"""compress/decompress equal the ComPEFT formula exactly, and bad input gets clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from compeft_core import CompressedExpert, CompressionInputError
from compeft_core.compress import compress
from compeft_core.lora_gauge import balance
from tests.compeft_reference import PAPER, reference_decompress


def _adapter(seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layers.0.q_proj.lora_A.weight": torch.randn(4, 64, generator=g).to(dtype),
        "layers.0.q_proj.lora_B.weight": (torch.randn(64, 4, generator=g) * 3).to(dtype),
        "layers.1.v_proj.lora_A.weight": torch.randn(4, 64, generator=g).to(dtype),
        "layers.1.v_proj.lora_B.weight": (torch.randn(33, 4, generator=g) * 0.01).to(dtype),
        "bias_like": torch.randn(7, generator=g).to(dtype),
    }


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("density", [0.01, 0.05, 0.1, 0.37, 0.5, 1.0])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.float32, torch.bfloat16])
def test_decompressed_tensors_equal_the_compeft_formula(scope, density, out_dtype):
    tensors = _adapter(seed=int(density * 100))
    expert = CompressedExpert.from_bytes(compress(tensors, density, scope, **PAPER).to_bytes())
    expected = reference_decompress(tensors, density, scope, None, out_dtype)
    decoded = expert.decompress(dtype=out_dtype)
    assert decoded.keys() == expected.keys()
    for name in expected:
        assert decoded[name].dtype == out_dtype
        assert torch.equal(decoded[name], expected[name]), name


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("density", [0.05, 0.1, 0.37, 1.0])
@pytest.mark.parametrize(
    ("factorisation", "scale"),
    [("balanced", "unbiased"), ("balanced", "entry"), ("as-trained", "unbiased")],
)
def test_balanced_factors_and_unbiased_scales_equal_their_formula(
    scope, density, factorisation, scale
):
    """Against an independent reference (full SVD of B·A): the balanced gauge may differ from it
    in the last bits of float32, so values are compared to 1e-5, zeros exactly."""
    tensors = _adapter(seed=int(density * 100))
    expert = CompressedExpert.from_bytes(
        compress(tensors, density, scope, factorisation=factorisation, scale=scale).to_bytes()
    )
    assert (expert.factorisation, expert.scale) == (factorisation, scale)
    expected = reference_decompress(
        tensors, density, scope, None, torch.float32, factorisation, scale
    )
    decoded = expert.decompress(dtype=torch.float32)
    for name in expected:
        torch.testing.assert_close(decoded[name], expected[name], rtol=1e-5, atol=0)


def test_balancing_keeps_the_product_and_the_adapter_layout():
    tensors = _adapter(seed=5)
    expert = compress(tensors, density=1.0, factorisation="balanced", scale="entry")
    assert expert.shapes == tuple(tuple(tensors[n].shape) for n in sorted(tensors))
    for module in ("layers.0.q_proj", "layers.1.v_proj"):
        a, b = (tensors[f"{module}.lora_{h}.weight"].double() for h in "AB")
        balanced_a, balanced_b = (torch.from_numpy(f) for f in balance(a.numpy(), b.numpy()))
        torch.testing.assert_close(balanced_b @ balanced_a, b @ a, rtol=1e-10, atol=1e-12)
        # balanced: both factors carry the same energy (the sum of the singular values)
        torch.testing.assert_close(balanced_a.norm(), balanced_b.norm(), rtol=1e-10, atol=0)


def test_unbiased_scale_makes_the_update_unbiased_along_the_original():
    tensors = _adapter(seed=6)
    decoded = compress(tensors, 0.1).decompress(dtype=torch.float64)
    for module in ("layers.0.q_proj", "layers.1.v_proj"):
        product = (tensors[f"{module}.lora_B.weight"] @ tensors[f"{module}.lora_A.weight"]).double()
        compressed = decoded[f"{module}.lora_B.weight"] @ decoded[f"{module}.lora_A.weight"]
        assert float((compressed * product).sum() / (product**2).sum()) == pytest.approx(1, 1e-5)
    # a tensor outside any pair keeps the paper's L2-optimal alpha
    paper = compress(tensors, 0.1, **PAPER)
    assert compress(tensors, 0.1).default_alphas["bias_like"] == paper.default_alphas["bias_like"]


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_float16_ties_are_broken_by_position(scope):
    # float16 has few distinct values: many entries tie at the threshold.
    values = torch.tensor([1.0, -2.0, 2.0, 2.0, -2.0, 0.5, 2.0, 1.0] * 9, dtype=torch.float16)
    tensors = {"a": values, "b": values.flip(0).clone()}
    decoded = compress(tensors, 0.25, scope).decompress(dtype=torch.float32)
    expected = reference_decompress(tensors, 0.25, scope, None, torch.float32)
    for name in tensors:
        assert torch.equal(decoded[name], expected[name])
    assert int((decoded["a"] != 0).sum()) == round(0.25 * 72) or scope == "global"


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_alpha_given_at_decode_time_overrides_the_default(scope):
    tensors = _adapter(seed=3)
    expert = compress(tensors, 0.2, scope, **PAPER)
    expected = reference_decompress(tensors, 0.2, scope, 2.5, torch.float32)
    decoded = expert.decompress(alpha=2.5, dtype=torch.float32)
    assert all(torch.equal(decoded[n], expected[n]) for n in tensors)


def test_alpha_given_at_compress_time_becomes_the_default():
    tensors = _adapter(seed=4)
    expert = compress(tensors, 0.1, "tensor", alpha=0.75, **PAPER)
    assert expert.scale == "fixed"
    decoded = expert.decompress(dtype=torch.float32)
    expected = reference_decompress(tensors, 0.1, "tensor", 0.75, torch.float32)
    assert all(torch.equal(decoded[n], expected[n]) for n in tensors)


def test_default_alpha_is_l2_optimal_for_the_kept_entries():
    tensors = {"w": torch.randn(1000, generator=torch.Generator().manual_seed(0))}
    expert = compress(tensors, 0.1)
    decoded = expert.decompress(dtype=torch.float64)["w"]
    kept = decoded != 0

    def error(alpha: float) -> float:
        return float(
            (
                (expert.decompress(alpha=alpha, dtype=torch.float64)["w"] - tensors["w"])[kept] ** 2
            ).sum()
        )

    best = expert.default_alphas["w"]
    assert error(best) < error(best * 1.01) and error(best) < error(best * 0.99)


def test_same_input_gives_identical_bytes_whatever_the_key_order():
    tensors = _adapter(seed=5)
    reordered = dict(reversed(list(tensors.items())))
    assert compress(tensors, 0.1).to_bytes() == compress(reordered, 0.1).to_bytes()


def test_exact_zeros_decode_to_zero_and_kept_counts_follow_round():
    tensors = {"sparse": torch.tensor([0.0] * 90 + [1.0, -1.0] * 5)}
    expert = compress(tensors, 0.5)
    decoded = expert.decompress(dtype=torch.float32)["sparse"]
    assert torch.equal(
        decoded, reference_decompress(tensors, 0.5, "tensor", None, torch.float32)["sparse"]
    )
    assert int((decoded != 0).sum()) == 10


def test_constant_tensor_has_zero_sigma_and_decodes_to_zero():
    expert = compress({"ones": torch.ones(16)}, 0.5)
    assert expert.sigmas["ones"] == 0.0
    assert torch.equal(expert.decompress()["ones"], torch.zeros(16, dtype=torch.float16))


def test_metadata_reports_scope_density_and_sizes():
    tensors = _adapter(seed=6)
    expert = compress(tensors, 0.1, "global", extra={"peft_config_sha256": "ab" * 32})
    meta = CompressedExpert.from_bytes(expert.to_bytes()).metadata
    assert meta["scope"] == "global" and meta["density"] == 0.1
    assert meta["num_params"] == sum(t.numel() for t in tensors.values())
    assert meta["nbytes"] == expert.nbytes
    assert meta["extra"] == {"peft_config_sha256": "ab" * 32}
    assert math.isclose(meta["bits_per_param"], 8 * expert.nbytes / meta["num_params"])


@pytest.mark.parametrize(
    ("tensors", "kwargs", "message"),
    [
        ({"w": torch.tensor([1.0, float("nan")])}, {}, "w: contains NaN or infinite"),
        ({"w": torch.tensor([1.0, float("inf")])}, {}, "w: contains NaN or infinite"),
        ({"w": torch.tensor([1.0, 1e300], dtype=torch.float64)}, {}, "w: holds values beyond"),
        (
            {
                "a": torch.ones(3, dtype=torch.float64),
                "w": torch.tensor([-1e39], dtype=torch.float64),
            },
            {"scope": "global"},
            "w: holds values beyond the float32 range",
        ),
        (
            {"a": torch.tensor([1e300], dtype=torch.float64), "w": torch.tensor([float("nan")])},
            {"scope": "global"},
            "a: holds values beyond the float32 range",
        ),
        ({"w": torch.zeros(0)}, {}, "w: empty tensor"),
        ({"w": torch.ones(3, dtype=torch.int64)}, {}, "not a floating point type"),
        ({"w": [1.0, 2.0]}, {}, "expected a torch.Tensor"),
        ({}, {}, "no tensors"),
        ({"w": torch.ones(3)}, {"density": 0.0}, "density must be in (0, 1]"),
        ({"w": torch.ones(3)}, {"density": 1.5}, "density must be in (0, 1]"),
        ({"w": torch.ones(3)}, {"density": -0.1}, "density must be in (0, 1]"),
        ({"w": torch.ones(3)}, {"density": float("nan")}, "density must be in (0, 1]"),
        ({"w": torch.ones(3)}, {"scope": "layer"}, "scope must be one of"),
        ({"w": torch.ones(3)}, {"alpha": float("nan")}, "alpha must be a finite number"),
        ({"w": torch.ones(3)}, {"alpha": 1e39}, "alpha must be a finite number within the float32"),
        ({"w": torch.ones(3)}, {"alpha": -(10**400)}, "alpha must be a finite number within"),
    ],
)
def test_bad_input_gets_a_clear_error(tensors, kwargs, message):
    with pytest.raises(
        CompressionInputError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        compress(tensors, **kwargs)


def test_decompress_refuses_non_float_dtype_and_nan_alpha():
    expert = compress({"w": torch.randn(10)}, 0.5)
    with pytest.raises(CompressionInputError, match="cannot decompress to"):
        expert.decompress(dtype=torch.int8)
    with pytest.raises(CompressionInputError, match="alpha must be a finite"):
        expert.decompress(alpha=float("inf"))


def test_large_expert_is_coded_in_parallel_streams_and_decodes_exactly():
    tensors = {
        "big": torch.randn(5_000_000, generator=torch.Generator().manual_seed(9)),
        "small": torch.randn(1000, generator=torch.Generator().manual_seed(10)),
    }
    expert = CompressedExpert.from_bytes(compress(tensors, 0.1, "global").to_bytes())
    assert len(expert.mask_streams) > 1
    expected = reference_decompress(tensors, 0.1, "global", None, torch.float32)
    decoded = expert.decompress(dtype=torch.float32)
    assert all(torch.equal(decoded[n], expected[n]) for n in tensors)


@pytest.mark.parametrize("magnitude", [1e18, 1e25, 1e35])
def test_huge_lora_factors_are_balanced_without_overflow(magnitude):
    # float32 Gram matrices overflow beyond about 1e19; they are then redone in float64
    g = torch.Generator().manual_seed(11)
    tensors = {
        "m.lora_A.weight": torch.randn(2, 8, generator=g) * magnitude,
        "m.lora_B.weight": torch.randn(8, 2, generator=g) * magnitude,
    }
    expert = compress(tensors, 0.5, measure_fidelity=True)
    decoded = CompressedExpert.from_bytes(expert.to_bytes()).decompress(dtype=torch.float64)
    product = tensors["m.lora_B.weight"].double() @ tensors["m.lora_A.weight"].double()
    compressed = decoded["m.lora_B.weight"] @ decoded["m.lora_A.weight"]
    cosine = float((product * compressed).sum() / (product.norm() * compressed.norm()))
    assert expert.fidelity["m"].cosine == pytest.approx(cosine, rel=1e-5)
    assert float((compressed * product).sum() / (product**2).sum()) == pytest.approx(1, rel=1e-5)
