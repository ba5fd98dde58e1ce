"""The quality evaluation's numbers: the summary line and the goals, from bench/quality.py's results.

Everything is computed from the results dict, so `python -m bench.quality --summary` gives the
same numbers from the stored JSON as the run did.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any

LEARNED_MARGIN = 0.1
SUMMARY_METHOD = "weights"  # the merge of the summary's merge_* keys (the first one measured)
SUMMARY_MODE = "lorahub"  # the composition mode of its compose_* keys


def learned_tasks(results: dict[str, Any]) -> list[str]:
    """Tasks whose fp16 expert beats the base model by LEARNED_MARGIN: only there can a
    compressed expert lose a skill (elsewhere there is none to lose)."""
    return [
        name
        for name, task in results["tasks"].items()
        if task["uncompressed"] - task["base"] >= LEARNED_MARGIN
    ]


def gain_kept(results: dict[str, Any], setting: str, accuracy: str) -> float | None:
    """Mean over the learned tasks of (compressed - base) / (fp16 - base), the compressed
    accuracy being `accuracy` ("test": tuned multiplier, "test_stored": the stored alphas);
    None when no task was learned."""
    tasks = results["tasks"]
    learned = learned_tasks(results)
    if not learned:
        return None
    return round(
        fmean(
            (tasks[n]["settings"][setting][accuracy] - tasks[n]["base"])
            / (tasks[n]["uncompressed"] - tasks[n]["base"])
            for n in learned
        ),
        4,
    )


def setting_keys(results: dict[str, Any]) -> list[str]:
    return list(next(iter(results["tasks"].values()))["settings"])


def at_density(results: dict[str, Any], setting: str, density: float) -> str | None:
    """The key of the setting like `setting` but for its density, if the run measured it."""
    uploads = next(iter(results["tasks"].values()))["uploads"]
    like = {k: uploads[setting][k] for k in ("scope", "factorisation", "scale")}
    return next(
        (
            key
            for key, upload in uploads.items()
            if upload["density"] == density and all(upload[k] == v for k, v in like.items())
        ),
        None,
    )


def setting_means(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per setting, averaged over tasks: accuracies, sizes, ratio to fp16, mean relative error."""
    tasks = results["tasks"].values()
    means = {}
    for key in setting_keys(results):
        uploads = [t["uploads"][key] for t in tasks]
        means[key] = {
            "density": uploads[0]["density"],
            "scope": uploads[0]["scope"],
            "test": fmean(t["settings"][key]["test"] for t in tasks),
            "test_stored": fmean(t["settings"][key]["test_stored"] for t in tasks),
            "validation": fmean(max(t["settings"][key]["validation"].values()) for t in tasks),
            "bits_per_param": fmean(u["bits_per_param"] for u in uploads),
            "blob_bytes": fmean(u["blob_bytes"] for u in uploads),
            "wire_bytes": fmean(u["wire_bytes"] for u in uploads),
            "fp16_bytes": fmean(u["original_bytes"] for u in uploads),
            "relative_error": fmean(u["fidelity"]["relative_error"]["mean"] for u in uploads),
        }
        means[key]["ratio"] = means[key]["fp16_bytes"] / means[key]["blob_bytes"]
    return means


def merge_means(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean test accuracy over the tasks, per variant and merge method."""
    return {
        variant: {method: fmean(entry["test"].values()) for method, entry in methods.items()}
        for variant, methods in results["merge"].items()
    }


def compose_means(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean test accuracy over the left-out tasks, per variant, of the top-1 expert ("top1") and
    of each composition mode."""
    compose = results["compose"].values()
    return {
        variant: {
            "top1": fmean(c[variant]["top1"] for c in compose),
            **{
                mode: fmean(c[variant][mode]["composed"] for c in compose)
                for mode in results["budget"]["compose_modes"]
            },
        }
        for variant in ("uncompressed", "compressed")
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, averaged over tasks (accuracies on the test splits); the gains kept
    over the learned tasks only (see `learned_tasks`), None when there is none."""
    tasks = results["tasks"]
    default = results["default_setting"]
    uncompressed = fmean(t["uncompressed"] for t in tasks.values())
    compressed = fmean(t["settings"][default]["test"] for t in tasks.values())
    merged, composed = merge_means(results), compose_means(results)
    d005 = at_density(results, default, 0.05)
    return {
        "tasks": len(tasks),
        "base_acc": round(fmean(t["base"] for t in tasks.values()), 4),
        "uncompressed_acc": round(uncompressed, 4),
        "compressed_acc": round(compressed, 4),
        "compressed_over_uncompressed": round(compressed / uncompressed, 4),
        "merge_compressed_acc": round(merged["compressed"][SUMMARY_METHOD], 4),
        "merge_uncompressed_acc": round(merged["uncompressed"][SUMMARY_METHOD], 4),
        "compose_compressed_acc": round(composed["compressed"][SUMMARY_MODE], 4),
        "compose_uncompressed_acc": round(composed["uncompressed"][SUMMARY_MODE], 4),
        "learned_tasks": len(learned_tasks(results)),
        "gain_kept": gain_kept(results, default, "test_stored"),
        "gain_kept_tuned": gain_kept(results, default, "test"),
        "gain_kept_d005": None if d005 is None else gain_kept(results, d005, "test"),
        "compose_top1_compressed_acc": round(composed["compressed"]["top1"], 4),
        "compose_top1_uncompressed_acc": round(composed["uncompressed"]["top1"], 4),
        "bits_per_param": round(
            fmean(t["uploads"][default]["bits_per_param"] for t in tasks.values()), 4
        ),
    }


@dataclass(frozen=True)
class Goal:
    """One of the issue's goals: `measured` must reach `target` (strictly above when `strict`)."""

    name: str
    measured: float | None
    target: float
    strict: bool = False

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured > self.target if self.strict else self.measured >= self.target

    @property
    def shortfall(self) -> float | None:
        """How far below the target the measurement is (0 when met, None when unmeasured)."""
        return None if self.measured is None else max(0.0, self.target - self.measured)


def goals(results: dict[str, Any]) -> list[Goal]:
    """The compression-quality issue's goals, measured; merges compare each variant's best method,
    compositions the LoraHub mode."""
    summary = summarize(results)
    merged, composed = merge_means(results), compose_means(results)
    d005 = at_density(results, results["default_setting"], 0.05)
    ratio = setting_means(results)[d005]["ratio"] if d005 else None
    return [
        Goal("tasks the fp16 experts learned", summary["learned_tasks"], 16),
        Goal("gain kept at the default, tuned multiplier", summary["gain_kept_tuned"], 1.0),
        Goal("gain kept at d=0.05, tuned multiplier", summary["gain_kept_d005"], 0.95),
        Goal("d=0.05: times smaller than fp16", ratio, 45),
        Goal("gain kept at the default, stored alpha (no tuning)", summary["gain_kept"], 0.90),
        Goal(
            "best compressed merge, minus the best uncompressed one",
            max(merged["compressed"].values()) - max(merged["uncompressed"].values()),
            0.0,
        ),
        Goal(
            "LoraHub on compressed experts, minus on uncompressed ones",
            composed["compressed"][SUMMARY_MODE] - composed["uncompressed"][SUMMARY_MODE],
            0.0,
        ),
        Goal(
            "LoraHub on compressed experts, minus the top-1 compressed expert",
            composed["compressed"][SUMMARY_MODE] - composed["compressed"]["top1"],
            0.0,
            strict=True,
        ),
    ]
