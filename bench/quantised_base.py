"""Experts on compressed bases (issue 16, after CPET): does an expert trained on a quantised copy of
the base work on the full-precision base, and the other way round, compressed or not?

For each task, two LoRA experts of the `q-v` kind (bench/quality_train.py: r=8 on q_proj and
v_proj, the same seed, schedule and examples) are trained on SmolLM2-135M-Instruct: one on the
full-precision base, one on a round-to-nearest 4-bit, per-group (64 weights) quantised copy of
it (`rtn_quantised`: every linear layer of the decoder blocks; embeddings and norms as they
are). Each expert is scored on the test split on both bases, as trained (fp16) and compressed
with the hub's default codec: the 2 x 2 table, twice, plus both bases alone.

    python -m bench.quantised_base            # 4 tasks, about 30 min on 2 cores
    python -m bench.quantised_base --quick    # 1 task, tiny splits, 2 steps (the tests)
    python -m bench.quantised_base --report   # rewrite the report from its stored JSON

The report (docs/results-quantised-base.md, or `--out`) has the tables; the last line printed is
one JSON object: per trained-on variant, evaluated-on variant and form, the mean accuracy, and
`cross_variant_drop`, how much an expert loses on the other variant than its own.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import torch
from transformers import PreTrainedModel

from bench.quality import BENCH_DIR, DOCS_DIR
from bench.quality_tasks import SplitSizes, encode, load_tasks
from bench.quality_train import Q_V, Schedule, accuracy, lora_model, set_lora, train_lora
from bench.smollm2 import load_smollm2
from compeft_core.compress import compress

FULL_PRECISION = "full-precision"
RTN_BITS = 4
RTN_GROUP = 64  # divides SmolLM2-135M's widths (576 and 1536); 128 does not divide 576
RTN_VARIANT = f"rtn-{RTN_BITS}bit-g{RTN_GROUP}"  # as an upload's base_model_variant names it
VARIANTS = (FULL_PRECISION, RTN_VARIANT)
FORMS = ("fp16", "compressed")
# A mean drop above this on the other variant (either form) is worth a warning to the client.
WARN_MARGIN = 0.02
QUANTISED_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Budget:
    tasks: tuple[str, ...]
    sizes: SplitSizes
    schedule: Schedule


FULL = Budget(
    ("news-outlet", "health-tweet-source", "parliament-party-en", "speech-language"),
    SplitSizes(train=400, validation=40, test=100),
    Schedule(max_steps=80, eval_every=40, patience=2, batch_size=8, lr=3e-3),
)
QUICK = Budget(
    ("speech-language",),
    SplitSizes(train=8, validation=4, test=4),
    Schedule(max_steps=2, eval_every=1, patience=1, batch_size=4, lr=3e-3),
)


def rtn_quantise(
    weight: torch.Tensor, bits: int = RTN_BITS, group: int = RTN_GROUP
) -> torch.Tensor:
    """Round-to-nearest asymmetric quantisation, dequantised: each run of `group` weights along
    the input dimension gets 2^bits levels evenly spaced from its minimum to its maximum, and each
    weight becomes its nearest level (a constant group stays as it is)."""
    rows, columns = weight.shape
    if columns % group:
        raise ValueError(f"input width {columns} is not a multiple of the group size {group}")
    groups = weight.detach().float().reshape(rows, columns // group, group)
    low = groups.amin(dim=-1, keepdim=True)
    step = (groups.amax(dim=-1, keepdim=True) - low) / (2**bits - 1)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    levels = torch.round((groups - low) / safe).clamp(0, 2**bits - 1)
    return (low + levels * step).reshape(rows, columns).to(weight.dtype)


def rtn_quantised(base: PreTrainedModel) -> PreTrainedModel:
    """A copy of `base` whose decoder blocks' linear layers hold `rtn_quantise`d weights."""
    quantised = copy.deepcopy(base)
    for name, module in quantised.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in QUANTISED_LAYERS:
            module.weight.data = rtn_quantise(module.weight.data)
    return quantised


@contextmanager
def expert_on(base: PreTrainedModel, tensors: dict[str, torch.Tensor]) -> Iterator[Any]:
    """`base` with the q-v expert `tensors` written in (unwrapped on exit)."""
    with lora_model(base, Q_V.config_dict()) as model:
        set_lora(model, tensors)
        yield model


def measure_task(
    bases: dict[str, PreTrainedModel], tokenizer: Any, task: Any, budget: Budget, seed: int
) -> dict[str, Any]:
    """Both experts of one task on both bases, fp16 and compressed; both bases alone."""
    data = {
        split: encode(tokenizer, task, getattr(task, split), Q_V.max_input_tokens)
        for split in ("train", "validation", "test")
    }
    pad = tokenizer.pad_token_id
    figures: dict[str, Any] = {
        "base": {v: accuracy(bases[v], data["test"], pad) for v in VARIANTS},
        "experts": {},
    }
    for trained_on in VARIANTS:
        start = time.perf_counter()
        trained = train_lora(
            bases[trained_on], Q_V, data["train"], data["validation"], budget.schedule, seed, pad
        )
        expert = compress(trained.tensors)
        forms = {"fp16": trained.tensors, "compressed": expert.decompress()}
        scores = {}
        for evaluated_on in VARIANTS:
            for form, tensors in forms.items():
                with expert_on(bases[evaluated_on], tensors) as model:
                    scores[f"{evaluated_on}/{form}"] = accuracy(model, data["test"], pad)
        figures["experts"][trained_on] = {
            "best_step": trained.best_step,
            "validation": trained.validation,
            "bits_per_param": expert.bits_per_param,
            "seconds": time.perf_counter() - start,
            "test": scores,
        }
    return figures


def summarise(per_task: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean test accuracy per (trained on, evaluated on, form), and what the other variant costs:
    per form, the mean over experts of (own variant - other variant)."""

    def mean(trained_on: str, key: str) -> float:
        return fmean(t["experts"][trained_on]["test"][key] for t in per_task.values())

    table = {
        trained_on: {f"{v}/{f}": mean(trained_on, f"{v}/{f}") for v in VARIANTS for f in FORMS}
        for trained_on in VARIANTS
    }
    drop = {
        form: fmean(
            table[own][f"{own}/{form}"] - table[own][f"{other}/{form}"]
            for own, other in zip(VARIANTS, reversed(VARIANTS), strict=True)
        )
        for form in FORMS
    }
    return {
        "tasks": len(per_task),
        "base": {v: fmean(t["base"][v] for t in per_task.values()) for v in VARIANTS},
        "table": table,
        "cross_variant_drop": drop,
    }


def write_report(results: dict[str, Any], out: Path) -> None:
    """The 2 x 2 tables (mean over tasks, then per task) as markdown, beside the JSON."""
    summary = results["summary"]
    lines = [
        "# Experts on a quantised base (bench/quantised_base.py)",
        "",
        (
            f"SmolLM2-135M-Instruct, q-v experts (r=8), {summary['tasks']} tasks, test accuracy. "
            f"`{RTN_VARIANT}`: round-to-nearest {RTN_BITS}-bit, groups of {RTN_GROUP}, every linear "
            "layer of the decoder blocks. Rows: the base the expert was trained on; columns: the base "
            "it is evaluated on, as trained (fp16) and compressed (the hub's default codec)."
        ),
        "",
        f"Bases alone: {', '.join(f'{v} {a:.3f}' for v, a in summary['base'].items())}.",
        "",
        "| trained on | " + " | ".join(f"on {v}, {f}" for v in VARIANTS for f in FORMS) + " |",
        "|---|" + "---|" * (len(VARIANTS) * len(FORMS)),
    ]
    for trained_on, row in summary["table"].items():
        lines.append(f"| {trained_on} | " + " | ".join(f"{a:.3f}" for a in row.values()) + " |")
    drop = summary["cross_variant_drop"]
    worst = max(drop.values())
    verdict = (
        "more than the margin: the hub should warn when a client applies an expert to another "
        "variant than the one it was trained on"
        if worst > WARN_MARGIN
        else "within the margin: no warning is needed on these tasks"
    )
    lines += [
        "",
        "Mean drop on the other variant than the one trained on: "
        + ", ".join(f"{form} {value:+.3f}" for form, value in drop.items())
        + f"; the larger, {worst:+.3f}, is {verdict} (margin {WARN_MARGIN:.2f}).",
        "",
        "## Per task",
        "",
        "| task | trained on | base alone (same variant) | "
        + " | ".join(f"on {v}, {f}" for v in VARIANTS for f in FORMS)
        + " |",
        "|---|---|---|" + "---|" * (len(VARIANTS) * len(FORMS)),
    ]
    for task, figures in results["tasks"].items():
        for trained_on, expert in figures["experts"].items():
            scores = " | ".join(f"{a:.3f}" for a in expert["test"].values())
            lines.append(
                f"| {task} | {trained_on} | {figures['base'][trained_on]:.3f} | {scores} |"
            )
    lines += ["", f"Command: `{results['command']}`, {results['wall_s']:.0f} s.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quantised_base", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 task, tiny splits, 2 steps")
    parser.add_argument(
        "--out",
        type=Path,
        default=DOCS_DIR / "results-quantised-base.md",
        help="the markdown report (a .json beside it); default %(default)s",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument(
        "--report", action="store_true", help="rewrite the report from the JSON beside it"
    )
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(args.out.with_suffix(".json").read_text())
        write_report(results, args.out)
        print(json.dumps(results["summary"]))
        return results
    budget = QUICK if args.quick else FULL
    start = time.perf_counter()
    tokenizer, base = load_smollm2(BENCH_DIR / ".cache")
    bases = {FULL_PRECISION: base, RTN_VARIANT: rtn_quantised(base)}
    tasks = load_tasks(budget.sizes, budget.tasks, args.seed)
    per_task = {t.name: measure_task(bases, tokenizer, t, budget, args.seed) for t in tasks}
    results = {
        "budget": asdict(budget),
        "seed": args.seed,
        "tasks": per_task,
        "summary": summarise(per_task),
        "command": "python -m bench.quantised_base" + (" --quick" if args.quick else ""),
        "wall_s": time.perf_counter() - start,
    }
    write_report(results, args.out)
    print(json.dumps(results["summary"]))
    return results


if __name__ == "__main__":
    main()
