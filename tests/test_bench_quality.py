"""bench/quality.py: the quick run goes end to end through a real hub, the stored results
summarize, the tasks' splits are fixed and disjoint, and what the client fetches is ComPEFT."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from bench.quality import (
    DEFAULT_SETTING,
    FULL,
    PAPER,
    Setting,
    results_dir,
    upload_settings,
)
from bench.quality_codecs import (
    PLOT,
    QUICK_POINTS,
    default_point,
    pareto_front,
)
from bench.quality_plots import PLOTS
from bench.quality_report import RESULTS_FILE
from bench.quality_summary import gain_kept, learned_tasks
from bench.quality_tasks import SplitSizes, load_tasks
from compeft_core.codecs import CODECS
from compeft_core.compress import compress
from compeft_core.peft_io import read_adapter_folder
from tests.bench_runs import run_bench

SUMMARY_KEYS = {
    "tasks",
    "base_acc",
    "uncompressed_acc",
    "compressed_acc",
    "compressed_over_uncompressed",
    "merge_compressed_acc",
    "merge_uncompressed_acc",
    "compose_compressed_acc",
    "compose_uncompressed_acc",
    "learned_tasks",
    "gain_kept",
    "gain_kept_tuned",
    "gain_kept_d005",
    "compose_top1_compressed_acc",
    "compose_top1_uncompressed_acc",
    "bits_per_param",
}


def _assert_accuracies(summary: dict) -> None:
    assert set(summary) == SUMMARY_KEYS
    for key, value in summary.items():
        if key.endswith("_acc"):
            assert 0.0 <= value <= 1.0, key


@pytest.mark.slow
def test_quick_run_trains_uploads_measures_and_reports(tmp_path):
    out = tmp_path / "results"
    _, summary = run_bench("bench.quality", "--quick", "--out", str(out), timeout=600)
    _assert_accuracies(summary)
    assert summary["tasks"] == 2
    results = json.loads((out / "quality.json").read_text())
    for task in results["tasks"].values():
        (upload,) = task["uploads"].values()
        # density 0.1: the entropy bound is 0.569 bits/param, 28x below fp16; headers cost a bit
        assert upload["original_bytes"] / upload["blob_bytes"] > 20
        # the fetch also reads the revision's JSON (config, sample inputs): a few KB
        assert upload["blob_bytes"] <= upload["wire_bytes"] < upload["blob_bytes"] + 16384
    assert {p.name for p in out.iterdir()} == {RESULTS_FILE, *PLOTS}
    report = out.with_suffix(".md").read_text()
    assert "## 4. Composition on an unseen task" in report and "| goal | target |" in report
    for entry in results["compose"].values():
        for variant in ("uncompressed", "compressed"):
            assert set(entry[variant]) == {"top1", "lorahub", "cat"}


def test_summary_of_the_stored_results_is_the_last_line():
    if not (results_dir(FULL.library.kind.name) / RESULTS_FILE).is_file():
        pytest.skip("no stored results yet: run `python -m bench.quality`")
    _, summary = run_bench("bench.quality", "--summary", timeout=120)
    _assert_accuracies(summary)
    assert summary["tasks"] >= 8


def test_tasks_have_fixed_disjoint_balanced_splits():
    tasks = load_tasks(FULL.sizes)
    assert len(tasks) >= 8
    for task in tasks:
        splits = [{e.text for e in split} for split in (task.train, task.validation, task.test)]
        assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
        assert len(task.test) == FULL.sizes.test and len(task.validation) == FULL.sizes.validation
        counts = [sum(e.label == label for e in task.test) for label in task.labels]
        assert max(counts) - min(counts) <= 1, (task.name, counts)
    assert load_tasks(FULL.sizes, ("news-outlet",)) == load_tasks(FULL.sizes, ("news-outlet",))


def test_settings_fetched_through_the_client_are_compeft_of_the_stored_adapter(hub_client):
    (task,) = load_tasks(SplitSizes(train=20, validation=0, test=0), ("news-outlet",))
    folder = FULL.library.folder / task.name
    settings = [
        DEFAULT_SETTING,
        Setting(0.05, "global", **PAPER),
        Setting(0.1, "tensor", **PAPER, codec="dare", value_bits=4),
        Setting(1.0, "tensor", **PAPER, codec="bitdelta"),
        Setting(0.2, "tensor", **PAPER, codec="deltadq", value_bits=3),
    ]
    uploaded = upload_settings(hub_client, "alice", folder, task, settings)
    stored = read_adapter_folder(folder).tensors
    for setting in settings:
        record = uploaded[setting.key]
        assert record["original_bytes"] == (folder / "adapter_model.safetensors").stat().st_size
        assert 0 < record["fidelity"]["cosine"]["mean"] <= 1
        fetched = hub_client.load(record["ref"])
        compressed = compress(stored, **asdict(setting))
        expected = compressed.decompress(dtype=torch.float32)
        assert fetched.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(fetched[name], tensor), name
        doubled = hub_client.load(record["ref"], alpha=2.0)
        local = compressed.decompress(alpha=2.0, dtype=torch.float32)
        assert all(torch.equal(doubled[n], local[n]) for n in local)


def _results(*tasks: tuple[float, float, float, float]) -> dict:
    """A results dict of tasks (base, fp16, tuned, stored) at the default and at d=0.05."""
    keys = {"default": 0.1, "sparser": 0.05}
    return {
        "default_setting": "default",
        "tasks": {
            f"task{i}": {
                "base": base,
                "uncompressed": fp16,
                "uploads": {
                    k: {
                        "density": d,
                        "scope": "tensor",
                        "factorisation": "balanced",
                        "scale": "unbiased",
                    }
                    for k, d in keys.items()
                },
                "settings": {k: {"test": tuned, "test_stored": stored} for k in keys},
            }
            for i, (base, fp16, tuned, stored) in enumerate(tasks)
        },
    }


def test_gain_kept_is_over_the_learned_tasks_with_stored_or_tuned_alphas():
    results = _results((0.2, 0.8, 0.8, 0.5), (0.2, 0.6, 0.5, 0.3), (0.5, 0.55, 0.2, 0.2))
    assert learned_tasks(results) == ["task0", "task1"]  # task2 gained 5 points: not learned
    assert gain_kept(results, "default", "test_stored") == pytest.approx((0.5 + 0.25) / 2)
    assert gain_kept(results, "default", "test") == pytest.approx((1 + 0.75) / 2)
    assert gain_kept(_results((0.5, 0.55, 0.2, 0.2)), "default", "test") is None


@pytest.mark.slow
def test_quick_codec_comparison_goes_through_every_codec_and_reports_the_front(tmp_path):
    out = tmp_path / "results-codecs"
    _, summary = run_bench("bench.quality", "--codecs", "--quick", "--out", str(out), timeout=600)
    keys = {Setting(scope="tensor", **point).key for point in QUICK_POINTS}
    assert set(summary["points"]) == keys and summary["tasks"] == 1
    assert summary["pareto"] and set(summary["pareto"]) <= keys
    results = json.loads((out / RESULTS_FILE).read_text())
    assert set(results["codec_speeds"]) == keys
    (task,) = results["tasks"].values()
    assert {u["codec"] for u in task["uploads"].values()} == set(CODECS)
    assert (out / PLOT).is_file()
    report = out.with_suffix(".md").read_text()
    assert "| point | bits/param |" in report and "| yes |" in report


def test_the_pareto_front_keeps_the_points_nothing_beats_on_size_and_gain():
    figures = {
        "small": {"bits_per_param": 0.4, "gain_kept": 0.8},
        "medium": {"bits_per_param": 0.6, "gain_kept": 0.95},
        "worse": {"bits_per_param": 0.7, "gain_kept": 0.9},  # medium is smaller and better
        "same_gain_bigger": {"bits_per_param": 1.0, "gain_kept": 0.95},
        "best": {"bits_per_param": 1.5, "gain_kept": 0.99},
    }
    assert pareto_front(figures) == ["small", "medium", "best"]


def test_the_default_is_the_smallest_front_point_within_two_points_of_the_best():
    figures = {
        "small": {"bits_per_param": 0.4, "gain_kept": 0.90},
        "medium": {"bits_per_param": 0.6, "gain_kept": 0.975},
        "best": {"bits_per_param": 1.5, "gain_kept": 0.99},
    }
    assert default_point(figures, pareto_front(figures)) == "medium"
    figures["medium"]["gain_kept"] = 0.96  # now more than 2 points below the best
    assert default_point(figures, pareto_front(figures)) == "best"


@pytest.mark.slow
def test_factorisation_bench_quick_measures_every_choice_against_the_paper():
    output, summary = run_bench("bench.factorisation", "--quick", timeout=600)
    assert summary["baseline"] == "as-trained/entry"
    assert set(summary["settings"]) == {
        f"{f}/{s}@0.1"
        for f, s in (
            ("as-trained", "entry"),
            ("balanced", "entry"),
            ("balanced", "unbiased"),
            ("as-trained", "unbiased"),
        )
    }
    for setting in summary["settings"].values():
        assert -1 <= setting["cosine"] <= 1 and setting["relative_error"] >= 0
        assert 0.3 < setting["bits_per_param"] < 1  # density 0.1: 0.57 bits/param and headers
    balanced, paper = (
        summary["settings"][key]["cosine"]
        for key in ("balanced/unbiased@0.1", "as-trained/entry@0.1")
    )
    assert balanced > paper + 0.1  # the balanced gauge keeps the product better (0.77 vs 0.54)
    assert "gain kept" in output
