"""Fixed-weight merging (task arithmetic, TIES) against straightforward references."""

from __future__ import annotations

import pytest
import torch

from compeft_core import CompositionError
from compeft_core.lora_expert import LoraExpert
from compeft_core.merge import merge_lora_experts, task_arithmetic, ties_merge

LORA_CONFIG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q"]}
A_KEY = "base_model.model.layer.q.lora_A.weight"
B_KEY = "base_model.model.layer.q.lora_B.weight"


def task_vectors(count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Continuous random values: no two magnitudes tie, so top-k is unambiguous."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {"w": torch.randn(6, 5, generator=generator), "b": torch.randn(7, generator=generator)}
        for _ in range(count)
    ]


def reference_ties(
    tensors: list[torch.Tensor], weights: list[float], density: float
) -> torch.Tensor:
    """TIES as its paper states it, one entry at a time."""
    trimmed = []
    for tensor in tensors:
        keep = int(density * tensor.numel())
        threshold = tensor.abs().flatten().sort(descending=True).values[keep - 1] if keep else 1e9
        trimmed.append(torch.where(tensor.abs() >= threshold, tensor, torch.zeros(())))
    merged = torch.zeros_like(tensors[0]).flatten()
    for index in range(merged.numel()):
        values = [t.flatten()[index].item() for t in trimmed]
        sign = 1.0 if sum(values) >= 0 else -1.0
        agreeing = [w * v for w, v in zip(weights, values) if v != 0 and (v > 0) == (sign > 0)]
        merged[index] = sum(agreeing) / len(agreeing) if agreeing else 0.0
    return merged.view_as(tensors[0])


def test_task_arithmetic_is_the_weighted_sum():
    vectors = task_vectors(3)
    weights = [0.5, -1.0, 2.0]
    merged = task_arithmetic(vectors, weights)
    assert merged.keys() == vectors[0].keys()
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, sum(w * v[name] for w, v in zip(weights, vectors)))


@pytest.mark.filterwarnings("ignore:The density 1.0:UserWarning")  # peft: "no pruning"
@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_ties_trims_elects_sign_and_takes_the_disjoint_mean(density):
    vectors = task_vectors(3, seed=1)
    weights = [1.0, 0.5, 2.0]
    merged = ties_merge(vectors, weights, density=density)
    for name, tensor in merged.items():
        expected = reference_ties([v[name] for v in vectors], weights, density)
        torch.testing.assert_close(tensor, expected)


def test_ties_of_agreeing_copies_is_the_trimmed_tensor():
    vector = task_vectors(1, seed=2)[0]
    merged = ties_merge([vector, vector], [1.0, 1.0], density=0.5)
    for name, tensor in merged.items():
        assert (tensor != 0).sum() == int(0.5 * vector[name].numel())
        torch.testing.assert_close(tensor[tensor != 0], vector[name][tensor != 0])


def test_different_names_or_shapes_are_refused_with_the_reason():
    first, second = task_vectors(2)
    with pytest.raises(CompositionError, match="other tensors"):
        task_arithmetic([first, {"w": second["w"]}], [1.0, 1.0])
    with pytest.raises(CompositionError, match=r"shape \(6, 4\).*different ranks"):
        ties_merge([first, {**second, "w": second["w"][:, :4]}], [1.0, 1.0])
    with pytest.raises(CompositionError, match="one weight per task vector"):
        task_arithmetic([first, second], [1.0])
    with pytest.raises(CompositionError, match="density"):
        ties_merge([first, second], [1.0, 1.0], density=0.0)


def lora_expert(name: str, seed: int, lora_alpha: float = 4) -> LoraExpert:
    generator = torch.Generator().manual_seed(seed)
    return LoraExpert(
        name,
        {**LORA_CONFIG, "lora_alpha": lora_alpha},
        {
            A_KEY: torch.randn(2, 5, generator=generator),
            B_KEY: torch.randn(3, 2, generator=generator),
        },
    )


def test_merging_lora_a_and_b_separately_is_lorahub_like_not_exact():
    experts = [lora_expert("x", 0), lora_expert("y", 1)]
    merged = merge_lora_experts(experts, [1.0, 1.0], method="task_arithmetic")
    assert merged.config == experts[0].config
    a = experts[0].tensors[A_KEY] + experts[1].tensors[A_KEY]
    b = experts[0].tensors[B_KEY] + experts[1].tensors[B_KEY]
    torch.testing.assert_close(merged.tensors[B_KEY] @ merged.tensors[A_KEY], b @ a)
    exact = sum(e.tensors[B_KEY] @ e.tensors[A_KEY] for e in experts)
    assert not torch.allclose(b @ a, exact)  # the cross terms B_x A_y + B_y A_x


def test_merge_lora_experts_keeps_each_experts_strength():
    base, stronger = lora_expert("x", 0), lora_expert("y", 0, lora_alpha=16)
    merged = merge_lora_experts([base, stronger], [0.0, 1.0], method="task_arithmetic")
    scaling = LORA_CONFIG["lora_alpha"] / LORA_CONFIG["r"]
    torch.testing.assert_close(
        scaling * merged.tensors[B_KEY] @ merged.tensors[A_KEY],
        16 / 2 * stronger.tensors[B_KEY] @ stronger.tensors[A_KEY],
    )


def test_merge_lora_experts_of_different_ranks_is_refused():
    small = LoraExpert(
        "small", {**LORA_CONFIG, "r": 1}, {A_KEY: torch.ones(1, 5), B_KEY: torch.ones(3, 1)}
    )
    with pytest.raises(CompositionError, match="differ in rank or target modules"):
        merge_lora_experts([lora_expert("x", 0), small], [1.0, 1.0])
