"""bench/quality_library.py: the committed expert libraries are what they say, training stops as
its schedule says, is resumable task by task, and the q,v library's tasks kept their splits."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace

import pytest

from bench.quality_library import (
    LIBRARIES,
    LIBRARIES_DIR,
    SIZES,
    TRAINING_RECORD,
    Library,
    is_trained,
    train_expert,
    train_library,
)
from bench.quality_tasks import SplitSizes, label_first_tokens, load_tasks
from bench.quality_train import Q_V, Schedule, length_grouped_batches, still_rising
from compeft_core.peft_io import read_adapter_folder

# sha256 of the q,v library's splits as bench/quality_tasks.py dealt them when those experts were
# trained (commit 3e5a121): new tasks and loaders must not move an example of the old ones.
Q_V_SPLITS_DIGEST = "bab93d1094dc6f63b7b984d08d17aa1ef09760ec690fa5945190ba1a23c2437e"
NUM_LAYERS = 30  # SmolLM2-135M


def test_the_q_v_tasks_kept_the_splits_their_experts_were_trained_on():
    digest = hashlib.sha256()
    for task in load_tasks(SIZES, LIBRARIES[Q_V.name].tasks):
        for split in (task.train, task.validation, task.test):
            for example in split:
                digest.update(f"{task.name}\0{example.text}\0{example.label}\n".encode())
        digest.update(task.instruction.encode())
    assert digest.hexdigest() == Q_V_SPLITS_DIGEST


def test_every_task_of_every_library_exists_and_its_labels_start_differently(smollm2):
    tokenizer, _ = smollm2
    names = {name for library in LIBRARIES.values() for name in library.tasks}
    tasks = load_tasks(SplitSizes(train=1, validation=1, test=1), tuple(names))
    assert {task.name for task in tasks} == names
    for task in tasks:
        assert len(set(label_first_tokens(tokenizer, task))) == len(task.labels)


def test_committed_experts_adapt_their_librarys_modules_and_record_their_training():
    for library in LIBRARIES.values():
        for folder in sorted(p for p in library.folder.iterdir() if p.is_dir()):
            assert folder.name in library.tasks, folder
            assert is_trained(folder), folder
            adapter = read_adapter_folder(folder)
            assert sorted(adapter.config["target_modules"]) == sorted(library.kind.targets)
            assert adapter.config["r"] == library.kind.rank
            modules = {name.split(".lora_")[0] for name in adapter.tensors}
            assert len(modules) == NUM_LAYERS * len(library.kind.targets), folder
            record = json.loads((folder / TRAINING_RECORD).read_text())
            assert record["task"] == folder.name and record["kind"]["name"] == library.kind.name
    size = sum(p.stat().st_size for p in LIBRARIES_DIR.rglob("*") if p.is_file())
    assert size < 100 * 2**20, f"bench/quality_experts is {size / 2**20:.0f} MiB"


def test_training_stops_once_patience_scores_have_not_beaten_the_best():
    assert still_rising({0: 0.2}, patience=2)
    assert still_rising({0: 0.2, 40: 0.9}, patience=2)
    assert still_rising({0: 0.2, 40: 0.9, 80: 0.9}, patience=2)
    assert not still_rising({0: 0.2, 40: 0.9, 80: 0.9, 120: 0.85}, patience=2)
    assert still_rising({0: 0.2, 40: 0.9, 80: 0.9, 120: 0.95}, patience=2)
    assert not still_rising({0: 0.5, 40: 0.5}, patience=1)


def test_batches_cover_each_epoch_once_and_group_similar_lengths():
    lengths = [(7 * i) % 97 for i in range(200)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=0, group=5)
    epoch = [next(batches) for _ in range(200 // 8)]
    rows = [row for batch in epoch for row in batch]
    assert sorted(rows) == list(range(200)) and all(len(batch) == 8 for batch in epoch)
    shuffled = list(range(200))
    random.Random(0).shuffle(shuffled)
    assert (
        _padding(lengths, epoch)
        < _padding(lengths, [shuffled[k : k + 8] for k in range(0, 200, 8)]) / 2
    )
    again = length_grouped_batches(lengths, batch_size=8, seed=0, group=5)
    assert [next(again) for _ in range(len(epoch))] == epoch


def _padding(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in batch) - lengths[j] for batch in batches for j in batch)


@pytest.mark.slow
def test_an_expert_is_written_whole_and_not_trained_twice(smollm2, tmp_path):
    tokenizer, base = smollm2
    library = Library(
        Q_V,
        ("chatterbot-category",),
        Schedule(max_steps=2, eval_every=1, patience=1, batch_size=2, lr=3e-3),
    )
    sizes = SplitSizes(train=4, validation=4, test=4)
    (task,) = load_tasks(sizes, library.tasks)
    record = train_expert(tokenizer, base, library, task, tmp_path / task.name, seed=0)
    assert [p.name for p in tmp_path.iterdir()] == [task.name]  # no partial folder left
    assert 1 <= record["best_step"] <= record["steps"] <= 2
    assert set(record["validation"]) >= {"0", "1"}
    assert json.loads((tmp_path / task.name / TRAINING_RECORD).read_text()) == record
    weights = read_adapter_folder(tmp_path / task.name).tensors
    assert any(
        name.endswith("lora_B.weight") and tensor.abs().max() > 0
        for name, tensor in weights.items()
    )  # trained, not the zero initialisation
    assert train_library(library, library.tasks, retrain=False, root=tmp_path, sizes=sizes) == {}
    retrained = train_library(
        replace(library, schedule=replace(library.schedule, max_steps=1)),
        library.tasks,
        retrain=True,
        root=tmp_path,
        sizes=sizes,
    )
    assert retrained[task.name]["steps"] == 1
