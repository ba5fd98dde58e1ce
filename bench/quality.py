"""Quality evaluation: does a ComPEFT-compressed expert keep its skill? (issue "Evaluation")

SmolLM2-135M-Instruct, one LoRA expert per label task (bench/quality_tasks.py) of one of the expert
libraries (bench/quality_library.py: `q-v` or `all-modules`), trained on CPU and stored in fp16
under bench/quality_experts/<library>/<task>/. Every expert goes
through a real hub (bench/hub_process.py: uvicorn, SQLite, local blob folder) over REST: one
revision per (density, scope) setting, compressed by the hub, fetched back and decompressed with
`HubClient.load`. Measured, all on fixed splits, nothing tuned on a test split:

1. per task, test accuracy of the base model (zero-shot), the uncompressed expert and every
   setting (factorisation, scale, scope, density), with the alphas the blob stores (what a user
   gets) and with an alpha multiplier picked on the validation split (a multiplier m scales the
   decoded A and B, so the update by m^2); the upload's fidelity and bits per parameter;
2. task arithmetic of all experts (A's with A's and B's with B's, or the products B·A: exact,
   SVD re-truncated, TIES), one coefficient per method picked on the mean validation accuracy,
   uncompressed against compressed at the default setting;
3. composition on an unseen task: each task left out in turn, the hub's search with 5 of its
   training inputs retrieves the 10 closest other experts, LoraHub composes them on those 5
   shots (modes lorahub and cat); against zero-shot and the top-1 retrieved expert alone,
   uncompressed and compressed;
4. bytes: blob bytes per setting (and HTTP body bytes of each fetch) against the fp16 adapter.

    python -m bench.quality             # all-modules library: 18 tasks; about an hour
    python -m bench.quality --library q-v   # the first, q,v-only library
    python -m bench.quality --train     # retrain the library's experts first
    python -m bench.quality --quick     # 2 tasks, tiny splits, 1 training step; temp folders
    python -m bench.quality --summary   # print the stored results' summary
    python -m bench.quality --report    # rewrite DIR.md and the plots from DIR/quality.json

Writes DIR/quality.json (first), DIR/*.png and DIR.md (DIR: docs/results for the all-modules
library, docs/results-q-v for the other; --quick: a temporary folder); the last line printed is
one JSON object (the summary).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from bench.hub_process import RunningHub, running_hub
from bench.quality_codecs import (
    CODEC_POINTS,
    QUICK_POINTS,
    codec_speeds,
    codec_summary,
    write_codec_report,
)
from bench.quality_combine import MERGE_METHODS, measure_composition, measure_merge
from bench.quality_library import LIBRARIES, SIZES, Library, train_library
from bench.quality_report import CODECS_DIR, RESULTS_FILE, write_report
from bench.quality_summary import summarize
from bench.quality_tasks import (
    LabelTask,
    SplitSizes,
    encode,
    load_tasks,
)
from bench.quality_train import (
    ALL_MODULES,
    Q_V,
    Bench,
    ExpertKind,
    Schedule,
    lora_model,
    set_lora,
)
from bench.smollm2 import load_smollm2
from compeft_core.codecs import CODECS, DEFAULT_DENSITY
from compeft_core.compress import compress
from compeft_core.formats import DEFAULT_CODEC
from compeft_core.lora_expert import LoraExpert
from compeft_core.peft_io import read_adapter_folder
from registry.client import HubClient

BENCH_DIR = Path(__file__).resolve().parent
DOCS_DIR = BENCH_DIR.parent / "docs"


def results_dir(library: str, codecs: bool = False) -> Path:
    """Where a library's full run writes: docs/results for the default library, else
    docs/results-<library>, and docs/results-codecs(-<library>) for the codec comparison (each
    folder beside its Markdown report, FOLDER.md)."""
    name = CODECS_DIR if codecs else "results"
    return DOCS_DIR / (name if library == FULL.library.kind.name else f"{name}-{library}")


Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Setting:
    """One way the hub compresses: `compeft_core.compress`'s arguments of that name."""

    density: float
    scope: str
    factorisation: str
    scale: str
    codec: str = DEFAULT_CODEC
    value_bits: int = 0

    @property
    def key(self) -> str:
        """ComPEFT's settings keep the keys of the results stored before the other codecs."""
        if self.codec == DEFAULT_CODEC and not self.value_bits:
            return f"{self.factorisation}/{self.scale} {self.scope}@{self.density:g}"
        levels = f"+{self.value_bits}b" if self.value_bits else ""
        return f"{self.codec}{levels} {self.scope}@{self.density:g}"


_SCOPE_DEFAULT = inspect.signature(compress).parameters["scope"].default
_COMPEFT = CODECS[DEFAULT_CODEC]
DEFAULT_SETTING = Setting(DEFAULT_DENSITY, _SCOPE_DEFAULT, _COMPEFT.factorisation, _COMPEFT.scale)
# The paper's choice (ComPEFT's reference code), measured beside the default at each density.
PAPER = {"factorisation": "as-trained", "scale": "entry"}


def settings_grid(densities: Sequence[float]) -> tuple[Setting, ...]:
    """The default at each density, the paper's factorisation and scale at each density, and the
    default at its density in the other scope."""
    other_scope = "global" if DEFAULT_SETTING.scope == "tensor" else "tensor"
    return (
        *(replace(DEFAULT_SETTING, density=d) for d in densities),
        *(replace(DEFAULT_SETTING, density=d, **PAPER) for d in densities),
        replace(DEFAULT_SETTING, scope=other_scope),
    )


@dataclass(frozen=True)
class Budget:
    """Everything that sizes a run; recorded in the results."""

    library: Library
    sizes: SplitSizes
    settings: tuple[Setting, ...]
    alpha_multipliers: tuple[float, ...]  # 1.0 (the stored alphas) first: it wins ties
    merge_coefficients: tuple[float, ...]
    merge_methods: tuple[str, ...]  # "weights" and the keys of PRODUCT_MERGES
    shots: int
    retrieved: int
    compose_steps: int
    compose_modes: tuple[str, ...]  # compeft_core.compose's modes
    combine: bool = True  # measure merging and composition (the codec comparison does not)


FULL = Budget(
    LIBRARIES[ALL_MODULES.name],
    SIZES,
    settings=settings_grid((0.05, 0.1, 0.2)),
    alpha_multipliers=(1.0, 1.41, 2.0, 2.83, 0.71),
    merge_coefficients=(0.2, 0.3, 0.5, 0.71, 1.0),
    merge_methods=MERGE_METHODS,
    shots=5,
    retrieved=10,
    compose_steps=20,
    compose_modes=("lorahub", "cat"),
)


def codec_budget(base: Budget, points: Sequence[dict[str, Any]]) -> Budget:
    """`base`'s tasks and splits at the codec comparison's points, with the stored alphas only
    and no merging or composition (bench/quality_codecs.py)."""
    return replace(
        base,
        settings=tuple(Setting(scope=DEFAULT_SETTING.scope, **point) for point in points),
        alpha_multipliers=(1.0,),
        combine=False,
    )


QUICK = Budget(
    Library(
        Q_V,
        ("chatterbot-category", "speech-language"),
        Schedule(max_steps=1, eval_every=1, patience=1, batch_size=4, lr=3e-3),
    ),
    SplitSizes(train=8, validation=4, test=4),
    settings=(DEFAULT_SETTING,),
    alpha_multipliers=(1.0,),
    merge_coefficients=(1.0,),
    merge_methods=MERGE_METHODS,
    shots=2,
    retrieved=1,
    compose_steps=1,
    compose_modes=("lorahub", "cat"),
)


def upload_settings(
    client: HubClient, owner: str, folder: Path, task: LabelTask, settings: Sequence[Setting]
) -> dict[str, dict[str, Any]]:
    """Upload one expert once per setting, as revisions 1.. of `owner/<task>`; the hub compresses.

    Returns, per setting, the pinned reference, the hub's size figures and its fidelity summary.
    """
    uploaded = {}
    for setting in settings:
        created = client.upload(
            folder,
            f"{owner}/{task.name}",
            description=task.instruction,
            samples=[e.text for e in task.train[:20]],
            **asdict(setting),
        )
        uploaded[setting.key] = {
            "ref": f"{created.id}@{created.revision}",
            **asdict(setting),
            "blob_bytes": created.blob_bytes,
            "original_bytes": created.original_bytes,
            "num_params": created.num_params,
            "bits_per_param": created.bits_per_param,
            "fidelity": created.fidelity.model_dump() if created.fidelity else None,
        }
    return uploaded


def fetch_settings(
    client: HubClient, hub: RunningHub, uploaded: dict[str, dict[str, Any]]
) -> dict[str, Tensors]:
    """Each setting's adapter through `HubClient.load` (default alphas), recording the HTTP body
    bytes the server sent for it into `uploaded`."""
    fetched = {}
    for key, record in uploaded.items():
        before = hub.wire()
        fetched[key] = client.load(record["ref"])
        record["wire_bytes"] = (hub.wire() - before).sent
    return fetched


def measure_task(
    bench: Bench,
    model: PeftModel,
    task: LabelTask,
    expert: Tensors,
    fetched: dict[str, Tensors],
    budget: Budget,
) -> dict[str, Any]:
    """Base, uncompressed and every setting: with the stored alphas (`test_stored`, what a user
    gets) and with the alpha multiplier picked on validation (`test`)."""
    with model.disable_adapter():
        result: dict[str, Any] = {"base": bench.score(model, task.name, "test")}
    set_lora(model, expert)
    result["uncompressed"] = bench.score(model, task.name, "test")
    result["settings"] = {}
    for key, tensors in fetched.items():
        validation = {}
        for multiplier in budget.alpha_multipliers:
            set_lora(model, tensors, multiplier)
            validation[multiplier] = bench.score(model, task.name, "validation")
        best = max(budget.alpha_multipliers, key=lambda m: validation[m])  # first wins ties
        set_lora(model, tensors, best)
        tuned = bench.score(model, task.name, "test")
        if best != 1.0:
            set_lora(model, tensors)
        result["settings"][key] = {
            "validation": {f"{m:g}": a for m, a in validation.items()},
            "multiplier": best,
            "test": tuned,
            "test_stored": (tuned if best == 1.0 else bench.score(model, task.name, "test")),
        }
    print(
        f"{task.name}: base {result['base']:.3f}, uncompressed {result['uncompressed']:.3f}, "
        + ", ".join(f"{k} {v['test']:.3f}" for k, v in result["settings"].items()),
        flush=True,
    )
    return result


def expert_variants(
    kind: ExpertKind, stored: dict[str, Tensors], fetched: dict[str, dict[str, Tensors]]
) -> dict[str, dict[str, LoraExpert]]:
    """The experts that merging and composition combine: the fp16 ones, and the hub's default
    setting with the alphas its blobs store (what `HubClient.load` gives a user, untuned)."""
    config = kind.config_dict()
    return {
        "uncompressed": {
            name: LoraExpert(name, config, {k: v.float() for k, v in t.items()})
            for name, t in stored.items()
        },
        "compressed": {
            name: LoraExpert(name, config, fetched[name][DEFAULT_SETTING.key]) for name in stored
        },
    }


def run(budget: Budget, experts_dir: Path, work: Path, retrain: bool, seed: int) -> dict[str, Any]:
    """Everything, in order: experts, hub round trips, per-task settings, merging, composition."""
    torch.manual_seed(seed)
    tokenizer, base = load_smollm2(BENCH_DIR / ".cache")
    library = budget.library
    tasks = load_tasks(budget.sizes, library.tasks, seed)
    bench = Bench(
        tokenizer,
        base,
        tasks,
        library.kind.max_input_tokens,
        {
            t.name: {
                split: encode(tokenizer, t, getattr(t, split), library.kind.max_input_tokens)
                for split in ("train", "validation", "test")
            }
            for t in tasks
        },
    )
    train_library(library, library.tasks, retrain, experts_dir, budget.sizes)
    folders = {t.name: experts_dir / t.name for t in tasks}
    stored = {name: dict(read_adapter_folder(path).tensors) for name, path in folders.items()}
    # The uploads come in a burst, faster than a token's default write rate: the client waits
    # out each 429's Retry-After, as any user's loop would.
    with (
        running_hub(work, (work / "blobs").as_uri()) as hub,
        HubClient(hub.url, hub.token, work / "cache", progress=False) as client,
    ):
        uploads = {
            t.name: upload_settings(client, hub.user, folders[t.name], t, budget.settings)
            for t in tasks
        }
        fetched = {t.name: fetch_settings(client, hub, uploads[t.name]) for t in tasks}
        with lora_model(base, library.kind.config_dict()) as model:
            per_task = {
                t.name: measure_task(bench, model, t, stored[t.name], fetched[t.name], budget)
                for t in tasks
            }
        merge, compose = {}, {}
        if budget.combine:
            variants = expert_variants(library.kind, stored, fetched)
            merge = measure_merge(
                bench,
                {v: list(e.values()) for v, e in variants.items()},
                budget.merge_coefficients,
                budget.merge_methods,
            )
            compose = measure_composition(bench, client, hub.user, variants, budget, seed)
    codecs = (
        {}
        if budget.combine
        else codec_speeds(stored[tasks[0].name], {s.key: asdict(s) for s in budget.settings})
    )
    return {
        "budget": asdict(budget),
        "seed": seed,
        "default_setting": DEFAULT_SETTING.key,
        "tasks": {
            t.name: {
                "labels": list(t.labels),
                "source": t.source,
                "instruction": t.instruction,
                "splits": {s: len(getattr(t, s)) for s in ("train", "validation", "test")},
                "uploads": uploads[t.name],
                **per_task[t.name],
            }
            for t in tasks
        },
        "merge": merge,
        "compose": compose,
        **({"codec_speeds": codecs} if codecs else {}),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run (or read the stored results), report, print the summary last."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="2 tasks, tiny budget, temp folders")
    mode.add_argument("--summary", action="store_true", help="summarize the stored results")
    mode.add_argument(
        "--report", action="store_true", help="rewrite the report and plots from the stored results"
    )
    parser.add_argument(
        "--library",
        choices=sorted(LIBRARIES),
        default=FULL.library.kind.name,
        help="which expert library to measure (default %(default)s)",
    )
    parser.add_argument("--train", action="store_true", help="retrain the library's experts")
    parser.add_argument(
        "--codecs",
        action="store_true",
        help="compare the blob's codecs at matched sizes instead (bench/quality_codecs.py; "
        "writes docs/results-codecs)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results folder (default docs/results, or "
        "docs/results-<library> for another library; --quick: a temporary "
        "folder)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if args.summary or args.report:
        out = args.out or results_dir(args.library, args.codecs)
        results = json.loads((out / RESULTS_FILE).read_text())
        summary = _report(results, out) if args.report else _summary(results)
        print(json.dumps(summary))
        return summary
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as scratch:
        scratch_dir = Path(scratch)
        out = args.out or (
            scratch_dir / "results" if args.quick else results_dir(args.library, args.codecs)
        )
        budget = QUICK if args.quick else replace(FULL, library=LIBRARIES[args.library])
        if args.codecs:  # quick: one task, enough to go through every codec end to end
            budget = (
                codec_budget(replace(budget, library=_one_task(budget.library)), QUICK_POINTS)
                if args.quick
                else codec_budget(budget, CODEC_POINTS)
            )
        experts_dir = scratch_dir / "experts" if args.quick else budget.library.folder
        (scratch_dir / "hub").mkdir()
        results = run(
            budget,
            experts_dir,
            scratch_dir / "hub",
            retrain=args.train or args.quick,
            seed=args.seed,
        )
        results["command"] = " ".join(
            ["python -m bench.quality", *(sys.argv[1:] if argv is None else argv)]
        )
        results["wall_s"] = time.perf_counter() - start
        out.mkdir(parents=True, exist_ok=True)
        (out / RESULTS_FILE).write_text(json.dumps(results, indent=1) + "\n")  # before the report
        summary = _report(results, out)
    print(json.dumps(summary))
    return summary


def _one_task(library: Library) -> Library:
    return replace(library, tasks=library.tasks[-1:])


def _is_codec_comparison(results: dict[str, Any]) -> bool:
    return not results["budget"].get("combine", True)


def _report(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write the report of either run (quality or codec comparison); returns its summary."""
    if _is_codec_comparison(results):
        return write_codec_report(results, out)
    return write_report(results, out)


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    return codec_summary(results) if _is_codec_comparison(results) else summarize(results)


if __name__ == "__main__":
    main()
