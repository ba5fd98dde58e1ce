"""Gradient-free searches on a few examples: LoraHub weights, and ComPEFT alphas.

Both run nevergrad over a `LoraComposer`: each step writes one candidate into the model in place
and runs the loss once (one forward pass per batch of examples); nothing is reloaded or rebuilt.
The starting point is evaluated first as step 0 (the base model for LoraHub, the alphas as loaded
for the alpha search) and the result is the best step by objective, so a search never returns
something worse than where it started. The objective is deterministic, so the best evaluated
candidate is what nevergrad's own recommendation would aim at, without an extra forward pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nevergrad as ng
import numpy as np
import torch

from compeft_core.compose import LoraComposer
from compeft_core.errors import CompositionError
from compeft_core.lora_expert import ComposedAdapter

Loss = Callable[[torch.nn.Module], float]
StepCallback = Callable[[int, int, float], None]
LORAHUB_REGULARIZATION = 0.05
LORAHUB_BOUND = 1.5


def lorahub_regularization(num_examples: int) -> float:
    """LoraHub's L1 weight against a mean cross-entropy over `num_examples` few-shot examples.

    The reference (sail-sg/lorahub, `default_get_loss`) sums the batch-mean losses and divides by
    the number of examples, so with its default single batch its loss is mean / n, against
    which it adds 0.05 x mean |w|. Against the mean itself that penalty is 0.05 x n x mean |w|:
    the same objective up to the factor n, so the same search.
    """
    if num_examples < 1:
        raise CompositionError(f"need at least one few-shot example, got {num_examples}")
    return LORAHUB_REGULARIZATION * num_examples


@dataclass(frozen=True)
class SearchStep:
    """One evaluated candidate; step 0 is the starting point."""

    step: int
    values: tuple[float, ...]
    loss: float
    objective: float


@dataclass(frozen=True)
class SearchTrace:
    """How a search ran: enough to reproduce it and to say which optimizer really worked.

    NGOpt and the other meta-optimizers pick a concrete optimizer from the dimension and budget
    (Cobyla for 20 weights and 40 steps under nevergrad 1.0.12); `optimizer_chosen` names it.
    """

    optimizer_requested: str
    optimizer_chosen: str
    nevergrad_version: str
    budget: int
    seed: int
    history: tuple[SearchStep, ...]

    @property
    def best(self) -> SearchStep:
        """The step of lowest objective (the earliest among equals)."""
        return min(self.history, key=lambda s: s.objective)


@dataclass(frozen=True)
class CompositionResult:
    """A LoraHub search: weights per expert, losses (cross-entropy, no penalty), the adapter."""

    weights: dict[str, float]
    mode: str
    loss_before: float
    loss_after: float
    adapter: ComposedAdapter
    search: SearchTrace


@dataclass(frozen=True)
class AlphaSearchResult:
    """An alpha search: per-expert scales of the tensors as loaded, and the ComPEFT alphas.

    `alphas[name]` = scale * the alpha the expert was decoded with, ready for
    `CompressedExpert.decompress(alpha=...)`; None where the expert was decoded with per-tensor
    default alphas, whose every alpha the scale multiplies.
    """

    scales: dict[str, float]
    alphas: dict[str, float | None]
    weights: dict[str, float]
    mode: str
    loss_start: float
    loss_after: float
    adapter: ComposedAdapter
    search: SearchTrace


def chosen_optimizer(optimizer: ng.optimizers.base.Optimizer) -> str:
    """The concrete optimizer behind nevergrad's meta-optimizers (NGOpt, MetaCMA, ...).

    They delegate to a lazily chosen `optim`, which may itself be a meta-optimizer; follow it.
    """
    while isinstance(getattr(optimizer, "optim", None), ng.optimizers.base.Optimizer):
        optimizer = optimizer.optim
    return optimizer.name


def _minimize(
    evaluate: Callable[[np.ndarray], tuple[float, float]],
    init: np.ndarray,
    lower: float,
    upper: float,
    *,
    optimizer: str,
    budget: int,
    seed: int,
    on_step: StepCallback | None,
) -> SearchTrace:
    """Evaluate `init` as step 0, then `budget` candidates asked from nevergrad.

    The objective is deterministic, so a candidate seen before (Cobyla starts by asking for
    `init` again) reuses its result instead of running the model once more.
    """
    if budget < 1:
        raise CompositionError(f"budget must be at least 1 step, got {budget}")
    if optimizer not in ng.optimizers.registry:
        raise CompositionError(
            f"unknown nevergrad optimizer {optimizer!r}; see nevergrad.optimizers.registry"
        )
    parametrization = ng.p.Array(init=init, lower=lower, upper=upper)
    parametrization.random_state = np.random.RandomState(seed)
    search = ng.optimizers.registry[optimizer](parametrization=parametrization, budget=budget)

    @functools.cache
    def evaluate_once(values: tuple[float, ...]) -> tuple[float, float]:
        return evaluate(np.array(values))

    start = tuple(init.tolist())
    history = [SearchStep(0, start, *evaluate_once(start))]
    for step in range(1, budget + 1):
        candidate = search.ask()
        values = tuple(np.asarray(candidate.value, dtype=np.float64).tolist())
        loss, objective = evaluate_once(values)
        search.tell(candidate, objective)
        history.append(SearchStep(step, values, loss, objective))
        if on_step is not None:
            on_step(step, budget, loss)
    return SearchTrace(
        optimizer, chosen_optimizer(search), ng.__version__, budget, seed, tuple(history)
    )


def _finite(loss: float) -> float:
    """Diverged candidates (NaN) count as infinitely bad instead of poisoning comparisons."""
    return loss if math.isfinite(loss) else math.inf


def _default_penalty(loss: Loss) -> float:
    examples = getattr(loss, "num_examples", None)
    if examples is None:
        raise CompositionError(
            "this loss does not say how many examples it scores: pass "
            "regularization=lorahub_regularization(<examples>)"
        )
    return lorahub_regularization(examples)


def lorahub_search(
    composer: LoraComposer,
    loss: Loss,
    *,
    budget: int = 40,
    optimizer: str = "NGOpt",
    seed: int = 42,
    regularization: float | None = None,
    bound: float = LORAHUB_BOUND,
    on_step: StepCallback | None = None,
) -> CompositionResult:
    """LoraHub: one weight per expert in [-bound, bound] from 0, minimizing loss + reg * mean|w|.

    `regularization=None` is LoraHub's own penalty (`lorahub_regularization` of the loss's
    `num_examples`, which a `FewShotLoss` has; give a number for any other loss). The
    composer's mode decides how weights combine ("lorahub": A's and B's summed separately;
    "cat": exactly sum_i w_i B_i A_i). The model is left holding the best composition found.
    """
    if not bound > 0:
        raise CompositionError(f"bound must be positive, got {bound}")
    penalty = _default_penalty(loss) if regularization is None else regularization

    def evaluate(weights: np.ndarray) -> tuple[float, float]:
        composer.apply(weights)
        value = _finite(loss(composer.peft_model))
        return value, value + penalty * float(np.mean(np.abs(weights)))

    trace = _minimize(
        evaluate,
        np.zeros(len(composer.experts)),
        -bound,
        bound,
        optimizer=optimizer,
        budget=budget,
        seed=seed,
        on_step=on_step,
    )
    best = trace.best
    composer.apply(best.values)
    return CompositionResult(
        weights=dict(zip(composer.expert_names, best.values, strict=True)),
        mode=composer.mode,
        loss_before=trace.history[0].loss,
        loss_after=best.loss,
        adapter=composer.adapter(),
        search=trace,
    )


def search_alphas(
    composer: LoraComposer,
    loss: Loss,
    *,
    weights: Sequence[float] | None = None,
    shared: bool = False,
    budget: int = 20,
    optimizer: str = "NGOpt",
    seed: int = 42,
    max_scale: float = 4.0,
    on_step: StepCallback | None = None,
) -> AlphaSearchResult:
    """Rescale each expert as a whole (one scale per expert, or one `shared`) in [0, max_scale].

    A ComPEFT blob decodes to alpha * sigma * ternary, so scaling an expert's tensors by s is
    decoding it with s times its alpha: no download, no decompression per step. The weights stay
    fixed (1 per expert by default). In "lorahub" mode only weight * scale matters, so this is most
    useful for one expert, in "cat" mode, or with `shared=True` after a LoraHub search.
    """
    if not max_scale > 1:
        raise CompositionError(f"max_scale must be above 1 (the start), got {max_scale}")
    count = len(composer.experts)
    fixed = np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)

    def evaluate(scales: np.ndarray) -> tuple[float, float]:
        composer.apply(fixed, np.broadcast_to(scales, (count,)))
        value = _finite(loss(composer.peft_model))
        return value, value

    trace = _minimize(
        evaluate,
        np.ones(1 if shared else count),
        0.0,
        max_scale,
        optimizer=optimizer,
        budget=budget,
        seed=seed,
        on_step=on_step,
    )
    best = trace.best
    scales = np.broadcast_to(best.values, (count,))
    composer.apply(fixed, scales)
    return AlphaSearchResult(
        scales={e.name: float(s) for e, s in zip(composer.experts, scales, strict=True)},
        alphas={
            e.name: None if e.alpha is None else float(s) * e.alpha
            for e, s in zip(composer.experts, scales, strict=True)
        },
        weights=dict(zip(composer.expert_names, fixed.tolist(), strict=True)),
        mode=composer.mode,
        loss_start=trace.history[0].loss,
        loss_after=best.loss,
        adapter=composer.adapter(),
        search=trace,
    )
