"""The LoRA gauge and the fidelity figures: pairs found by name and shape, balancing keeps the
product, and fidelity equals the figures computed from the full products."""

from __future__ import annotations

from statistics import fmean

import numpy as np
import pytest
import torch

from bench.quality_library import LIBRARIES
from compeft_core import CompressedExpert
from compeft_core.compress import compress
from compeft_core.lora_gauge import balance, lora_pairs
from compeft_core.peft_io import read_adapter_folder
from tests.compeft_reference import PAPER, reference_fidelity


def _lora(seed: int, out: int = 24, rank: int = 4, inputs: int = 40) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "m.lora_A.weight": torch.randn(rank, inputs, generator=g),
        "m.lora_B.weight": torch.randn(out, rank, generator=g) * 0.1,
        "m.ia3_l": torch.randn(16, generator=g) * 0.01,
    }


def test_pairs_are_lora_halves_whose_shapes_multiply():
    names = [
        "a.lora_A.weight",
        "a.lora_B.weight",
        "lone.lora_A.weight",
        "conv.lora_A.weight",
        "conv.lora_B.weight",
        "bad.lora_A.weight",
        "bad.lora_B.weight",
        "vector",
    ]
    shapes = [(4, 8), (6, 4), (4, 8), (4, 3, 1, 1), (6, 4, 1, 1), (4, 8), (6, 3), (5,)]
    assert [(p.module, p.a, p.b) for p in lora_pairs(names, shapes)] == [("a", 0, 1)]


@pytest.mark.parametrize(("out", "rank", "inputs"), [(24, 4, 40), (3, 8, 40), (24, 8, 5)])
def test_balance_keeps_shapes_and_product_also_beyond_the_product_rank(out, rank, inputs):
    g = np.random.default_rng(0)
    a, b = g.standard_normal((rank, inputs)), g.standard_normal((out, rank))
    balanced_a, balanced_b = balance(a, b)
    assert balanced_a.shape == a.shape and balanced_b.shape == b.shape
    np.testing.assert_allclose(balanced_b @ balanced_a, b @ a, atol=1e-12)
    kept = min(out, rank, inputs)  # components beyond the product's rank are zero
    assert not balanced_a[kept:].any() and not balanced_b[:, kept:].any()
    # the rows of A' are orthogonal: the gauge is the SVD's
    gram = balanced_a @ balanced_a.T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-12)


def test_balance_does_not_depend_on_the_trained_gauge():
    a, b = (
        np.random.default_rng(1).standard_normal((4, 30)),
        np.random.default_rng(2).standard_normal((20, 4)),
    )
    mixing = np.random.default_rng(3).standard_normal((4, 4))
    mine, theirs = balance(a, b), balance(np.linalg.solve(mixing, a), b @ mixing)
    for factor, other in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(factor, other, atol=1e-8)


@pytest.mark.parametrize(
    "choices",
    [
        PAPER,
        {"factorisation": "balanced", "scale": "unbiased"},
        {"factorisation": "balanced", "scale": "unbiased", "alpha": 2.0},
    ],
)
@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_fidelity_measured_while_compressing_equals_the_decoded_blobs(choices, scope):
    """Against the full products of the decoded blob (the reference); under global scope the
    small (IA)^3 vectors lose every entry to the LoRAs' larger ones (cosine 0)."""
    tensors = {**_lora(seed=7), **{f"n.{k}": v for k, v in _lora(seed=8, out=12, rank=2).items()}}
    expert = compress(tensors, 0.3, scope, measure_fidelity=True, **choices)
    decoded = CompressedExpert.from_bytes(expert.to_bytes()).decompress(dtype=torch.float64)
    reference = reference_fidelity(tensors, decoded)
    assert expert.fidelity.keys() == reference.keys() == {"m", "m.ia3_l", "n.m", "n.m.ia3_l"}
    for name, (relative_error, cosine) in reference.items():
        assert expert.fidelity[name].relative_error == pytest.approx(
            relative_error, rel=1e-5, abs=1e-6
        )
        assert expert.fidelity[name].cosine == pytest.approx(cosine, rel=1e-5, abs=1e-6)
    assert compress(tensors, 0.3, scope, **choices).fidelity == {}  # only when asked


def test_balanced_is_closer_to_the_product_than_as_trained_on_a_trained_expert():
    # A real SmolLM2 expert (bench/quality_experts): after a short training A is mostly its
    # random init, so as trained its largest entries are mostly noise. Measured: mean cosine
    # 0.50 as trained, 0.76 balanced, over the 60 modules at density 0.1.
    tensors = read_adapter_folder(LIBRARIES["q-v"].folder / "news-outlet").tensors
    trained = compress(tensors, 0.1, measure_fidelity=True, **PAPER).fidelity.values()
    balanced = compress(tensors, 0.1, measure_fidelity=True).fidelity.values()
    assert len(balanced) == 60
    assert fmean(f.cosine for f in balanced) > fmean(f.cosine for f in trained) + 0.15
    assert fmean(f.relative_error for f in balanced) < 1.0


def test_zero_update_decoded_as_zero_is_exact():
    tensors = {"w": torch.zeros(8)}
    figure = compress(tensors, 0.5, measure_fidelity=True).fidelity["w"]
    assert (figure.relative_error, figure.cosine) == (0.0, 1.0)
