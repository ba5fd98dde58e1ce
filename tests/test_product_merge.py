"""Merging LoRA experts in product space against dense float64 references."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from peft.utils import merge_utils

from compeft_core import CompositionError
from compeft_core.lora_expert import ComposedAdapter, LoraExpert, lora_key
from compeft_core.product_merge import PRODUCT_METHODS, merge_lora_products
from tests.fixtures.toy_experts import llama_base
from tests.test_compose import delta_weights, own_scaling

LAYERS = {"layer.q": (12, 10), "layer.v": (8, 10)}  # module path -> (out, in)


def random_expert(
    name: str,
    seed: int,
    rank: int,
    lora_alpha: float = 8,
    use_rslora: bool = False,
    layers: dict[str, tuple[int, int]] = LAYERS,
) -> LoraExpert:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for path, (out_features, in_features) in layers.items():
        tensors[lora_key(path, "A")] = torch.randn(rank, in_features, generator=generator)
        tensors[lora_key(path, "B")] = torch.randn(out_features, rank, generator=generator)
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": lora_alpha,
        "use_rslora": use_rslora,
        "target_modules": sorted({path.rsplit(".", 1)[-1] for path in layers}),
    }
    return LoraExpert(name, config, tensors)


# Different ranks (sum 6, below every min(out, in)), lora_alphas and scaling rules.
EXPERTS = [
    random_expert("x", 0, rank=2),
    random_expert("y", 1, rank=3, lora_alpha=3),
    random_expert("z", 2, rank=1, lora_alpha=5, use_rslora=True),
]
WEIGHTS = [0.7, -0.4, 1.3]
TOTAL_RANK = 6


def expert_updates(experts: list[LoraExpert], path: str) -> list[torch.Tensor]:
    """scaling_i * B_i @ A_i in float64, the scaling from the config as peft documents it."""
    return [
        own_scaling(e)
        * e.tensors[lora_key(path, "B")].double()
        @ e.tensors[lora_key(path, "A")].double()
        for e in experts
    ]


def weighted_sum(experts: list[LoraExpert], weights: list[float], path: str) -> torch.Tensor:
    return sum(w * update for w, update in zip(weights, expert_updates(experts, path)))


def merged_update(adapter: ComposedAdapter, path: str) -> torch.Tensor:
    """The update peft applies for the merged adapter's config and tensors, in float64."""
    return expert_updates([LoraExpert("merged", adapter.config, adapter.tensors)], path)[0]


def truncation(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    u, s, vt = torch.linalg.svd(matrix, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]


def test_concat_is_exactly_the_weighted_sum_of_the_expert_updates():
    merged = merge_lora_products(EXPERTS, WEIGHTS, method="concat")
    assert merged.config["r"] == TOTAL_RANK
    for path, (out_features, in_features) in LAYERS.items():
        assert merged.tensors[lora_key(path, "A")].shape == (TOTAL_RANK, in_features)
        assert merged.tensors[lora_key(path, "B")].shape == (out_features, TOTAL_RANK)
        torch.testing.assert_close(
            merged_update(merged, path), weighted_sum(EXPERTS, WEIGHTS, path), rtol=1e-6, atol=1e-5
        )


def test_svd_is_the_best_rank_r_approximation_of_the_sum():
    merged = merge_lora_products(EXPERTS, WEIGHTS, method="svd", rank=2)
    assert merged.config["r"] == 2
    for path, (out_features, in_features) in LAYERS.items():
        assert merged.tensors[lora_key(path, "A")].shape == (2, in_features)
        assert merged.tensors[lora_key(path, "B")].shape == (out_features, 2)
        exact = weighted_sum(EXPERTS, WEIGHTS, path)
        update = merged_update(merged, path)
        assert torch.linalg.matrix_rank(update) == 2
        tail = torch.linalg.svdvals(exact)[2:].norm()
        error = torch.linalg.matrix_norm(exact - update)
        assert error.item() == pytest.approx(tail.item(), rel=1e-4)


def test_svd_rank_defaults_to_the_first_experts_rank():
    assert merge_lora_products(EXPERTS[1:], WEIGHTS[1:]).config["r"] == 3


@pytest.mark.parametrize("rank", [TOTAL_RANK, TOTAL_RANK + 3])
def test_svd_with_rank_at_least_the_sum_of_ranks_is_exact(rank):
    merged = merge_lora_products(EXPERTS, WEIGHTS, method="svd", rank=rank)
    assert merged.config["r"] == rank
    for path in LAYERS:
        torch.testing.assert_close(
            merged_update(merged, path), weighted_sum(EXPERTS, WEIGHTS, path), rtol=1e-6, atol=1e-5
        )


@pytest.mark.parametrize("method", ["svd", "ties"])
def test_truncated_factors_are_balanced_with_the_singular_values(method):
    merged = merge_lora_products(EXPERTS, WEIGHTS, method=method, rank=3, density=0.5)
    for path in LAYERS:
        a = merged.tensors[lora_key(path, "A")].double()
        b = merged.tensors[lora_key(path, "B")].double()
        gram = b.T @ b
        torch.testing.assert_close(gram, a @ a.T, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            gram, torch.diag(torch.linalg.svdvals(b @ a)[:3]), rtol=1e-5, atol=1e-5
        )
        largest = a.gather(1, a.abs().argmax(dim=1, keepdim=True))
        assert (largest > 0).all()  # lora_gauge's sign convention


def dense_ties(density: float, sign_method: str, path: str) -> torch.Tensor:
    weights = torch.tensor(WEIGHTS, dtype=torch.float64)
    return merge_utils.ties(expert_updates(EXPERTS, path), weights, density, sign_method)


@pytest.mark.parametrize(("density", "sign_method"), [(0.3, "total"), (0.5, "frequency")])
def test_ties_is_the_rank_r_truncation_of_ties_of_the_dense_updates(density, sign_method):
    merged = merge_lora_products(
        EXPERTS, WEIGHTS, method="ties", rank=2, density=density, sign_method=sign_method
    )
    assert merged.config["r"] == 2
    for path in LAYERS:
        torch.testing.assert_close(
            merged_update(merged, path),
            truncation(dense_ties(density, sign_method, path), 2),
            rtol=1e-5,
            atol=1e-5,
        )


def test_ties_with_full_rank_is_the_dense_ties_result():
    full = max(min(shape) for shape in LAYERS.values())
    merged = merge_lora_products(EXPERTS, WEIGHTS, method="ties", rank=full, density=0.3)
    for path in LAYERS:
        torch.testing.assert_close(
            merged_update(merged, path), dense_ties(0.3, "total", path), rtol=1e-5, atol=1e-5
        )


def with_tensor(expert: LoraExpert, key: str, tensor: torch.Tensor) -> LoraExpert:
    return LoraExpert(f"{expert.name}+", expert.config, {**expert.tensors, key: tensor})


@pytest.mark.parametrize("method", PRODUCT_METHODS)
@pytest.mark.parametrize(
    ("experts", "weights", "message"),
    [
        ([], [], "no experts"),
        (EXPERTS, [1.0, 2.0], "one weight per expert: got 3 experts, 2 weights"),
        (
            [EXPERTS[0], random_expert("q only", 3, 2, layers={"layer.q": (12, 10)})],
            [1.0, 1.0],
            r"different LoRA modules \(layer\.v",
        ),
        (
            [EXPERTS[0], random_expert("narrow", 3, 2, layers={**LAYERS, "layer.q": (12, 9)})],
            [1.0, 1.0],
            r"different LoRA modules \(layer\.q: \(out, in\) \(12, 10\) vs \(12, 9\)",
        ),
        (
            [
                EXPERTS[0],
                with_tensor(EXPERTS[1], "base_model.model.classifier.weight", torch.ones(2, 10)),
            ],
            [1.0, 1.0],
            r"classifier\.weight is not a LoRA A/B weight",
        ),
    ],
)
def test_unmergeable_experts_are_refused_with_the_reason(method, experts, weights, message):
    with pytest.raises(CompositionError, match=message):
        merge_lora_products(experts, weights, method=method)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"method": "svd", "rank": 0}, "rank must be an integer >= 1, got 0"),
        ({"method": "ties", "rank": -1}, "rank must be an integer >= 1, got -1"),
        ({"method": "concat", "rank": 2}, "rank applies to 'svd' and 'ties'"),
        ({"method": "ties", "density": 0.0}, r"density must be in \(0, 1\], got 0.0"),
        ({"method": "ties", "density": 1.5}, r"density must be in \(0, 1\], got 1.5"),
        ({"method": "mean"}, "method must be one of"),
    ],
)
def test_unusable_arguments_are_refused_with_the_reason(arguments, message):
    with pytest.raises(CompositionError, match=message):
        merge_lora_products(EXPERTS, WEIGHTS, **arguments)


def test_svd_result_loaded_by_peft_applies_exactly_the_truncated_sum(tmp_path):
    layers = {
        "model.layers.0.self_attn.q_proj": (64, 64),
        "model.layers.1.self_attn.v_proj": (32, 64),
    }
    experts = [
        random_expert("x", 0, rank=4, layers=layers),
        random_expert("y", 1, rank=2, lora_alpha=16, layers=layers),
    ]
    weights = [0.5, 1.5]
    merged = merge_lora_products(experts, weights, method="svd", rank=3)
    model = PeftModel.from_pretrained(llama_base(), merged.save(tmp_path / "svd"))
    deltas = delta_weights(model)
    assert deltas.keys() == layers.keys()
    for path, delta in deltas.items():
        expected = truncation(weighted_sum(experts, weights, path), 3)
        torch.testing.assert_close(delta.double(), expected, rtol=1e-5, atol=1e-5)
