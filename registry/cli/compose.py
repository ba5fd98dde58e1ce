"""`compeft-hub merge` and `compeft-hub compose`: experts combined on a local base model (the
`compose` extra: peft, transformers, nevergrad), imported when the command runs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from registry.cli.extras import needs_extra
from registry.cli.options import (
    Endpoint,
    Force,
    Token,
    open_client,
    output_folder,
    reported_errors,
    table_console,
)
from retrieval.limits import MAX_QUERY_EXAMPLES


@needs_extra("compose")
def merge(
    experts: Annotated[
        list[str],
        typer.Argument(
            help="Experts to merge, owner/name or owner/name@REVISION (same ranks and modules).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder to write the merged PEFT adapter to.", show_default=False)
    ],
    weights: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated weight per expert, e.g. 0.5,0.5 (default: 1/N each).",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        Literal["ties", "task_arithmetic"],
        typer.Option(help="ties: trim, elect sign, disjoint mean; task_arithmetic: weighted sum."),
    ] = "ties",
    density: Annotated[
        float,
        typer.Option(
            help="TIES: fraction of each expert's largest entries kept before the sign vote."
        ),
    ] = 0.2,
    force: Force = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Merge experts with fixed weights (A's with A's, B's with B's) into one PEFT adapter."""
    from compeft_core.merge import merge_lora_experts
    from registry.client.composition import load_lora_experts

    with reported_errors(), open_client(endpoint, token) as client, known_warnings_silenced():
        output_folder(out, force)
        factors = _weights(weights, len(experts))
        loaded = load_lora_experts(client, experts)
        merged = merge_lora_experts(loaded, factors, method=method, density=density)
        typer.echo(merged.save(out))


def _weights(text: str | None, count: int) -> list[float]:
    if text is None:
        return [1.0 / count] * count
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as exc:
        raise ValueError(f"--weights {text!r}: give comma-separated numbers") from exc
    if len(values) != count:
        raise ValueError(f"--weights has {len(values)} numbers for {count} experts")
    return values


@needs_extra("compose")
def compose(
    examples: Annotated[
        Path,
        typer.Option(
            help='Few-shot examples, JSON lines: {"input": "...", "output": "..."}.',
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ],
    base_model: Annotated[
        str,
        typer.Option(
            help="Base model id the experts were trained on, as the hub records it (search filter).",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path,
        typer.Option(
            help="That base model on disk: a transformers folder or a .gguf file.",
            exists=True,
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder to write the composed PEFT adapter to.", show_default=False)
    ],
    query: Annotated[
        str | None,
        typer.Option(
            help="The task in words, for retrieval (the example inputs are sent too).",
            show_default=False,
        ),
    ] = None,
    expert: Annotated[
        list[str] | None,
        typer.Option(
            help="Compose this expert (owner/name or owner/name@REVISION; repeatable) instead of "
            "searching.",
            show_default=False,
        ),
    ] = None,
    k: Annotated[
        int, typer.Option("-k", "--top-k", help="How many experts to retrieve.", min=1)
    ] = 20,
    steps: Annotated[
        int, typer.Option(help="Optimizer budget: one few-shot forward pass each.", min=1)
    ] = 40,
    mode: Annotated[
        Literal["lorahub", "cat"],
        typer.Option(
            help="lorahub: A's and B's weighted separately (same ranks and modules); "
            "cat: exactly sum of w_i B_i A_i (any ranks)."
        ),
    ] = "lorahub",
    optimizer: Annotated[str, typer.Option(help="Any nevergrad optimizer name.")] = "NGOpt",
    seed: Annotated[int, typer.Option(help="Seed of the optimizer.")] = 42,
    force: Force = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Compose experts for a new task from a few examples (LoraHub) and write a PEFT folder.

    Retrieves the k experts closest to the task (or takes --expert) and decompresses them.
    Searches one weight per expert in [-1.5, 1.5] minimizing few-shot loss + 0.05 mean |w|.
    Writes the adapter and composition.json (weights, losses, nevergrad's chosen optimizer).
    """
    from compeft_core.fewshot import FewShotLoss
    from registry.client.composition import (
        Shots,
        compose_from_hub,
        load_base_model,
        save_composition,
    )

    with reported_errors(), open_client(endpoint, token) as client, known_warnings_silenced():
        output_folder(out, force)
        shots = Shots.read_jsonl(examples)
        if expert:
            chosen, scores = list(expert), {}
        else:
            hits = client.search(
                query=query,
                examples=shots.inputs[:MAX_QUERY_EXAMPLES],
                base_model=base_model,
                k=k,
                peft_type="LORA",
            )
            if not hits:
                raise ValueError(f"no LoRA expert for base model {base_model!r} on the hub")
            chosen = [f"{hit.id}@{hit.revision.revision}" for hit in hits]
            scores = {name: hit.score for name, hit in zip(chosen, hits, strict=True)}
            typer.echo(f"retrieved {len(chosen)} experts", err=True)
        typer.echo(f"loading the base model from {model}", err=True)
        local = load_base_model(model)
        loss = FewShotLoss.from_text(
            local.tokenizer, shots.inputs, shots.outputs, seq2seq=local.seq2seq
        )
        with client.tqdm_class(
            total=steps, desc="composing", unit="step", disable=not client.progress
        ) as progress:
            report = StepLines(steps, shown=not client.progress)

            def on_step(step: int, budget: int, step_loss: float) -> None:
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}")
                report.step(step, step_loss)

            result = compose_from_hub(
                client,
                chosen,
                local.model,
                loss,
                mode=mode,
                budget=steps,
                optimizer=optimizer,
                seed=seed,
                on_step=on_step,
            )
        save_composition(
            result, out, query=query, base_model=base_model, model=str(model), scores=scores
        )
    table = Table("expert", "score", "weight", title=f"{mode} composition")
    for name, weight in result.weights.items():
        score = scores.get(name)
        table.add_row(name, "" if score is None else f"{score:.3f}", f"{weight:+.4f}")
    console = table_console()
    console.print(table)
    trace = result.search
    console.print(
        f"optimizer: {trace.optimizer_requested} chose {trace.optimizer_chosen} "
        f"(nevergrad {trace.nevergrad_version}), {trace.budget} steps, seed {trace.seed}"
    )
    console.print(
        f"few-shot loss: {result.loss_before:.4f} (base model) -> {result.loss_after:.4f}"
    )
    console.print(f"wrote {out}")


@dataclass
class StepLines:
    """The search's progress as plain stderr lines, for when no progress bar shows (stderr is a
    log or a pipe): about ten over the run, each with the step's loss and the best so far, so
    a person watching a job sees it move."""

    budget: int
    shown: bool
    best: float = math.inf

    def step(self, step: int, loss: float) -> None:
        self.best = min(self.best, loss)
        if self.shown and (step % max(1, self.budget // 10) == 0 or step == self.budget):
            typer.echo(
                f"composing: step {step}/{self.budget}, loss {loss:.4f}, best {self.best:.4f}",
                err=True,
            )


# Warnings that libraries print during a merge or a composition and that tell a user of these
# commands nothing they could act on: transformers' internal deprecation, peft noting that a
# folder made from a local base model has no config of the hub's base model id, and scipy's
# COBYLA adjusting a tolerance nevergrad passes.
KNOWN_NOISE = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    (UserWarning, r"Could not find a config file in .* will assume that the vocabulary"),
    (UserWarning, r"The PEFT config's `base_model_name_or_path` was renamed"),
    (UserWarning, r"COBYLA: Invalid RHOEND"),
)


@contextmanager
def known_warnings_silenced() -> Iterator[None]:
    """Run the block with KNOWN_NOISE ignored; every other warning still shows."""
    with warnings.catch_warnings():
        for category, message in KNOWN_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield
