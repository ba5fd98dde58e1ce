"""The expert libraries of the quality evaluation: which LoRA experts, trained how, kept where.

Two libraries of fp16 SmolLM2-135M-Instruct experts, committed under bench/quality_experts/:
- `q-v`: r=8 on q_proj and v_proj, 32-token inputs, 80 steps: the first library, kept as it was
  trained so that earlier results stay comparable;
- `all-modules`: r=8 on every linear layer (q, k, v, o, gate, up, down), 64-token inputs, trained
  until validation accuracy stops rising.

Training is resumable task by task: an expert is trained only when its folder lacks one, and each
folder is written whole (adapter files and training.json, then renamed into place), so a run cut
off keeps every expert it finished.

    python -m bench.quality_library                    # train the missing all-modules experts
    python -m bench.quality_library --tasks sarcasm food --retrain
    python -m bench.quality_library --library q-v      # the first library (kept as trained)

The last line printed is one JSON object: per task, steps, best step, validation curve, seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bench.quality_tasks import LabelTask, SplitSizes, encode, load_tasks
from bench.quality_train import ALL_MODULES, Q_V, ExpertKind, Schedule, save_expert, train_lora
from bench.smollm2 import load_smollm2
from compeft_core.formats import WEIGHTS_NAME

BENCH_DIR = Path(__file__).resolve().parent
LIBRARIES_DIR = BENCH_DIR / "quality_experts"
SIZES = SplitSizes(train=400, validation=40, test=100)
TRAINING_RECORD = "training.json"


@dataclass(frozen=True)
class Library:
    """One expert per task, all of one kind and trained on one schedule, in one folder."""

    kind: ExpertKind
    tasks: tuple[str, ...]
    schedule: Schedule

    @property
    def folder(self) -> Path:
        return LIBRARIES_DIR / self.kind.name


LIBRARIES = {
    library.kind.name: library
    for library in (
        Library(
            Q_V,
            (
                "news-outlet",
                "news-outlet-set2",
                "health-tweet-source",
                "health-tweet-source-set2",
                "parliament-party-en",
                "parliament-party-de",
                "parliament-party-es",
                "parliament-party-nl",
                "chatterbot-category",
                "speech-language",
            ),
            Schedule(max_steps=80, eval_every=80, patience=1, batch_size=8, lr=3e-3),
        ),
        # Ordered so that a run cut short has trained the tasks most likely to be learned.
        Library(
            ALL_MODULES,
            (
                "health-tweet-source",
                "chatterbot-category",
                "news-outlet-set2",
                "speech-language",
                "health-tweet-source-set2",
                "news-outlet",
                "news-text-outlet",
                "health-tweet-source-set3",
                "chatterbot-language",
                "chatterbot-category-it",
                "chatterbot-category-set2",
                "sarcasm",
                "naughty-strings",
                "formal-logic",
                "heart-disease",
                "food",
                "diabetes",
                "bulgarian-lexicon",
            ),
            Schedule(max_steps=240, eval_every=40, patience=2, batch_size=8, lr=1e-3),
        ),
    )
}


def is_trained(folder: Path) -> bool:
    return (folder / WEIGHTS_NAME).is_file() and (folder / TRAINING_RECORD).is_file()


def train_expert(
    tokenizer: PreTrainedTokenizerBase,
    base: PreTrainedModel,
    library: Library,
    task: LabelTask,
    folder: Path,
    seed: int,
) -> dict[str, Any]:
    """Train one expert and write its folder whole (a half-trained folder never exists)."""
    start = time.perf_counter()
    trained = train_lora(
        base,
        library.kind,
        encode(tokenizer, task, task.train, library.kind.max_input_tokens),
        encode(tokenizer, task, task.validation, library.kind.max_input_tokens),
        library.schedule,
        seed,
        tokenizer.pad_token_id,
        lambda step, score: print(
            f"  {task.name} step {step}: validation {score:.3f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        ),
    )
    record = {
        "task": task.name,
        "kind": asdict(library.kind),
        "schedule": asdict(library.schedule),
        "seed": seed,
        "train_examples": len(task.train),
        "steps": trained.steps,
        "best_step": trained.best_step,
        "validation": {str(k): v for k, v in trained.validation.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
    }
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    save_expert(partial, library.kind, trained.tensors)
    text = json.dumps(record, indent=1) + "\n"
    (partial / TRAINING_RECORD).write_text(text)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return json.loads(text)


def train_library(
    library: Library, tasks: tuple[str, ...], retrain: bool, root: Path, sizes: SplitSizes = SIZES
) -> dict[str, dict[str, Any]]:
    """Train the library's missing experts among `tasks` (every one when `retrain`), in order."""
    wanted = [
        name for name in library.tasks if name in tasks and (retrain or not is_trained(root / name))
    ]
    if not wanted:
        return {}
    tokenizer, base = load_smollm2(BENCH_DIR / ".cache")
    records = {}
    for task in sorted(load_tasks(sizes, tuple(wanted)), key=lambda t: wanted.index(t.name)):
        record = train_expert(
            tokenizer, base, library, task, root / task.name, seed=library.tasks.index(task.name)
        )
        curve = ", ".join(f"{k}: {v:.3f}" for k, v in record["validation"].items())
        print(
            f"trained {library.kind.name}/{task.name} in {record['seconds']:.0f} s, "
            f"best at step {record['best_step']} of {record['steps']} ({curve})",
            flush=True,
        )
        records[task.name] = record
    return records


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--library", choices=sorted(LIBRARIES), default=ALL_MODULES.name)
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: all the library's)")
    parser.add_argument("--retrain", action="store_true", help="train even if already trained")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    library = LIBRARIES[args.library]
    unknown = set(args.tasks or ()) - set(library.tasks)
    if unknown:
        parser.error(f"not tasks of the {library.kind.name} library: {sorted(unknown)}")
    torch.set_num_threads(args.threads)
    records = train_library(
        library, tuple(args.tasks or library.tasks), args.retrain, library.folder
    )
    print(json.dumps(records))
    return records


if __name__ == "__main__":
    main()
