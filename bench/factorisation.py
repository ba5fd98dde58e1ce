"""Which factorisation and default scale keep an expert's skill? (issue "gauge-balanced LoRA")

For each committed expert of one library of bench/quality_experts/ (SmolLM2-135M-Instruct; see
bench/quality_library.py: `q-v`, LoRA r=8 on q, v, or `all-modules`) and
each (factorisation, scale) of `compress` at each density, straight through compeft_core (no hub,
the bytes are the same), measured:

- fidelity over all modules (compeft_core.fidelity): cosine and relative error of B·A;
- test accuracy with the alphas the blob stores (what `HubClient.load` and `export` give a user,
  no tuning), and with a multiplier m of the decoded A and B (the update by m^2) picked on the
  validation split (`tuned`), as bench/quality.py does;
- bits per parameter of the blob.

Summarised over the *learned* tasks (fp16 expert at least 10 points over the base model):
`gain_kept` = mean over them of (compressed - base) / (fp16 - base), untuned and tuned. The
baseline is the paper's choice, ("as-trained", "entry"), measured in the same run.

    python -m bench.factorisation            # q-v: 10 tasks, about 12 min on 2 cores
    python -m bench.factorisation --library all-modules
    python -m bench.factorisation --quick    # 1 task, tiny splits (used by the tests)

The last line printed is one JSON object: per setting, its gains kept, fidelity and size.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from statistics import fmean
from typing import Any

import torch

from bench.quality import BENCH_DIR, FULL
from bench.quality_library import LIBRARIES
from bench.quality_summary import LEARNED_MARGIN
from bench.quality_tasks import SplitSizes, encode, load_tasks
from bench.quality_train import Bench, lora_model, set_lora
from bench.smollm2 import load_smollm2
from compeft_core.compress import compress
from compeft_core.peft_io import read_adapter_folder

CHOICES = (
    ("as-trained", "entry"),
    ("balanced", "entry"),
    ("balanced", "unbiased"),
    ("as-trained", "unbiased"),
)
BASELINE = "as-trained/entry"
MULTIPLIERS = (1.0, 0.71, 1.41, 2.0)  # ordered by preference when validation ties


@dataclass(frozen=True)
class Budget:
    tasks: int | None  # the library's first so many tasks; None: all
    sizes: SplitSizes
    densities: tuple[float, ...]
    multipliers: tuple[float, ...]


FULL_RUN = Budget(None, FULL.sizes, (0.05, 0.1, 0.2), MULTIPLIERS)
QUICK_RUN = Budget(1, SplitSizes(train=8, validation=4, test=4), (0.1,), (1.0, 2.0))


def setting_key(factorisation: str, scale: str, density: float) -> str:
    return f"{factorisation}/{scale}@{density:g}"


def measure_task(
    bench: Bench, model: torch.nn.Module, task: str, expert: dict[str, torch.Tensor], budget: Budget
) -> dict[str, Any]:
    """Base, fp16 and every setting's fidelity, bits and accuracies (stored alpha and tuned)."""
    with model.disable_adapter():
        result: dict[str, Any] = {"base": bench.score(model, task, "test")}
    set_lora(model, expert)
    result["fp16"] = bench.score(model, task, "test")
    result["settings"] = {}
    for density in budget.densities:
        for factorisation, scale in CHOICES:
            compressed = compress(
                expert, density, factorisation=factorisation, scale=scale, measure_fidelity=True
            )
            fidelity = compressed.fidelity.values()
            decoded = compressed.decompress(dtype=torch.float32)
            validation = {}
            for multiplier in budget.multipliers:
                set_lora(model, decoded, multiplier)
                validation[multiplier] = bench.score(model, task, "validation")
            best = max(budget.multipliers, key=lambda m: validation[m])  # first wins ties
            set_lora(model, decoded, best)
            tuned = bench.score(model, task, "test")
            set_lora(model, decoded)
            result["settings"][setting_key(factorisation, scale, density)] = {
                "stored": bench.score(model, task, "test"),
                "tuned": tuned,
                "multiplier": best,
                "cosine": fmean(f.cosine for f in fidelity),
                "relative_error": fmean(f.relative_error for f in fidelity),
                "bits_per_param": compressed.bits_per_param,
            }
    print(
        f"{task}: base {result['base']:.2f} fp16 {result['fp16']:.2f} | "
        + " | ".join(
            f"{key} {s['stored']:.2f}/{s['tuned']:.2f} cos {s['cosine']:.2f}"
            for key, s in result["settings"].items()
        ),
        flush=True,
    )
    return result


def summarize(per_task: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per setting over the learned tasks: gains kept (stored alpha, tuned), fidelity, bits."""
    learned = [name for name, r in per_task.items() if r["fp16"] - r["base"] >= LEARNED_MARGIN]
    over = learned or list(per_task)  # the quick run's tiny splits may learn nothing

    def kept(name: str, key: str, kind: str) -> float:
        r = per_task[name]
        return (r["settings"][key][kind] - r["base"]) / max(r["fp16"] - r["base"], 1e-9)

    settings = {}
    for key in next(iter(per_task.values()))["settings"]:
        settings[key] = {
            "gain_kept": fmean(kept(n, key, "stored") for n in over),
            "gain_kept_tuned": fmean(kept(n, key, "tuned") for n in over),
            **{
                field: fmean(per_task[n]["settings"][key][field] for n in per_task)
                for field in ("cosine", "relative_error", "bits_per_param")
            },
        }
    return {"learned_tasks": learned, "baseline": BASELINE, "settings": settings}


def print_table(summary: dict[str, Any]) -> None:
    """Each setting against the baseline at the same density."""
    print(f"learned tasks: {', '.join(summary['learned_tasks']) or 'none'}")
    print(
        f"{'setting':32} {'gain kept':>9} {'tuned':>7} {'vs base':>8} {'cosine':>7} "
        f"{'rel.err':>7} {'bits/p':>7}"
    )
    for key, s in summary["settings"].items():
        baseline = summary["settings"][BASELINE + "@" + key.split("@")[1]]["gain_kept"]
        ratio = f"{s['gain_kept'] / baseline:7.2f}x" if baseline > 0 else "       -"
        print(
            f"{key:32} {s['gain_kept']:9.1%} {s['gain_kept_tuned']:7.1%} {ratio} "
            f"{s['cosine']:7.3f} {s['relative_error']:7.3f} {s['bits_per_param']:7.3f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 task, tiny splits")
    parser.add_argument(
        "--library",
        choices=sorted(LIBRARIES),
        default=FULL.library.kind.name,
        help="which expert library to measure (default %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = QUICK_RUN if args.quick else FULL_RUN
    library = LIBRARIES[args.library]
    start = time.perf_counter()
    tokenizer, base = load_smollm2(BENCH_DIR / ".cache")
    tasks = load_tasks(budget.sizes, library.tasks[: budget.tasks])
    tokens = library.kind.max_input_tokens
    bench = Bench(
        tokenizer,
        base,
        tasks,
        tokens,
        {
            t.name: {
                split: encode(tokenizer, t, getattr(t, split), tokens)
                for split in ("validation", "test")
            }
            for t in tasks
        },
    )
    with lora_model(base, library.kind.config_dict()) as model:
        per_task = {
            t.name: measure_task(
                bench,
                model,
                t.name,
                {
                    k: v.float()
                    for k, v in read_adapter_folder(library.folder / t.name).tensors.items()
                },
                budget,
            )
            for t in tasks
        }
    summary = summarize(per_task)
    print_table(summary)
    summary["wall_s"] = time.perf_counter() - start
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
