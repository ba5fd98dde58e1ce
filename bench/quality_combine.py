"""Combining the library's experts, for bench/quality.py: task arithmetic of all of them (sections
2 of the report) and LoraHub composition on each left-out task (section 3)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import fmean
from typing import TYPE_CHECKING, Any

import torch

from bench.quality_tasks import LabelTask, prompts_and_answers
from bench.quality_train import BASE_MODEL, Bench, in_bf16, lora_model, set_lora
from compeft_core.compose import LoraComposer
from compeft_core.fewshot import FewShotLoss
from compeft_core.lora_expert import ComposedAdapter, LoraExpert
from compeft_core.lorahub import lorahub_regularization, lorahub_search
from compeft_core.merge import merge_lora_experts
from compeft_core.product_merge import ProductMethod, merge_lora_products
from registry.client import HubClient

if TYPE_CHECKING:
    from bench.quality import Budget

# A's with A's and B's with B's (LoraHub-like: cross terms), or the updates B·A themselves: exactly
# (rank Σr), truncated back to rank r by SVD, or TIES of the dense updates truncated to rank r.
PRODUCT_MERGES: dict[str, ProductMethod] = {
    "product": "concat",
    "product-svd": "svd",
    "ties-product": "ties",
}
MERGE_METHODS = ("weights", *PRODUCT_MERGES)


def merged_adapter(experts: list[LoraExpert], method: str) -> ComposedAdapter:
    """All experts merged with weight 1. Every method is homogeneous in a common weight c, so a
    grid of c rescales this one result: the factors by c for "weights" (A's with A's, B's with
    B's: the update is quadratic in c), by √c for the product methods (linear in c)."""
    ones = [1.0] * len(experts)
    if method == "weights":
        return merge_lora_experts(experts, ones, method="task_arithmetic")
    return merge_lora_products(experts, ones, PRODUCT_MERGES[method])


def measure_merge(
    bench: Bench,
    variants: dict[str, list[LoraExpert]],
    coefficients: Sequence[float],
    methods: Sequence[str],
) -> dict[str, Any]:
    """Task arithmetic of all experts by each method, one coefficient per variant and method
    picked on the mean validation accuracy over the tasks."""
    merged_results: dict[str, dict[str, Any]] = {}
    for variant, experts in variants.items():
        merged_results[variant] = {}
        for method in methods:
            result = _measure_merged(
                bench,
                merged_adapter(experts, method),
                quadratic=method == "weights",
                coefficients=coefficients,
            )
            merged_results[variant][method] = result
            print(
                f"merge {variant} by {method}: coefficient {result['coefficient']}, mean test "
                f"{fmean(result['test'].values()):.3f}",
                flush=True,
            )
    return merged_results


def _measure_merged(
    bench: Bench, adapter: ComposedAdapter, quadratic: bool, coefficients: Sequence[float]
) -> dict[str, Any]:
    """The merged adapter at its best coefficient on validation (factors times c when its update
    is `quadratic` in c, else times √c), then on every task's test split."""
    with lora_model(bench.base, adapter.config) as model:
        validation = {}
        for coefficient in coefficients:
            set_lora(model, adapter.tensors, coefficient if quadratic else math.sqrt(coefficient))
            validation[coefficient] = fmean(
                bench.score(model, t.name, "validation") for t in bench.tasks
            )
        best = max(coefficients, key=lambda c: validation[c])
        set_lora(model, adapter.tensors, best if quadratic else math.sqrt(best))
        return {
            "validation": {f"{c:g}": a for c, a in validation.items()},
            "coefficient": best,
            "rank": adapter.config["r"],
            "test": {t.name: bench.score(model, t.name, "test") for t in bench.tasks},
        }


def measure_composition(
    bench: Bench,
    client: HubClient,
    owner: str,
    variants: dict[str, dict[str, LoraExpert]],
    budget: Budget,
    seed: int,
) -> dict[str, Any]:
    """Leave each task out, retrieve others through the hub's search with its first shots,
    and compare the top-1 expert alone with a LoraHub search over the retrieved ones, in each
    composition mode ("composed": the first mode's; every mode's under its name)."""
    results = {}
    for task in bench.tasks:
        shots = task.train[: budget.shots]
        prompts, answers = prompts_and_answers(bench.tokenizer, task, shots, bench.max_input_tokens)
        hits = client.search(
            examples=[e.text for e in shots],
            base_model=BASE_MODEL,
            k=budget.retrieved,
            exclude=[f"{owner}/{task.name}"],
        )
        retrieved = [hit.id.split("/", 1)[1] for hit in hits]
        loss = in_bf16(FewShotLoss.from_text(bench.tokenizer, prompts, answers, seq2seq=False))
        results[task.name] = {"retrieved": retrieved}
        for variant, experts in variants.items():
            chosen = [experts[name] for name in retrieved]
            top1 = _top1(bench, task, chosen[0])
            results[task.name][variant] = {
                "top1": top1,
                **{
                    mode: _compose_searched(
                        bench, task, chosen, mode, loss, len(shots), budget.compose_steps, seed
                    )
                    for mode in budget.compose_modes
                },
            }
        print(
            f"compose {task.name} from {retrieved}: "
            + ", ".join(
                f"{v} top-1 {results[task.name][v]['top1']:.3f} "
                + " ".join(
                    f"{mode} {results[task.name][v][mode]['composed']:.3f}"
                    for mode in budget.compose_modes
                )
                for v in variants
            ),
            flush=True,
        )
    return results


def _top1(bench: Bench, task: LabelTask, expert: LoraExpert) -> float:
    """The first retrieved expert alone, on the test split."""
    with lora_model(bench.base, expert.config) as model:
        set_lora(model, expert.tensors)
        return bench.score(model, task.name, "test")


def _compose_searched(
    bench: Bench,
    task: LabelTask,
    experts: list[LoraExpert],
    mode: str,
    loss: Callable[[torch.nn.Module], float],
    shots: int,
    steps: int,
    seed: int,
) -> dict[str, Any]:
    """LoraHub's search over the retrieved experts in one composition mode, then the test split."""
    composer = LoraComposer(bench.base, experts, mode)
    try:
        found = lorahub_search(
            composer, loss, budget=steps, seed=seed, regularization=lorahub_regularization(shots)
        )
        return {
            "composed": bench.score(composer.peft_model, task.name, "test"),
            "weights": list(found.weights.values()),
            "loss_before": found.loss_before,
            "loss_after": found.loss_after,
        }
    finally:
        composer.peft_model.unload()
