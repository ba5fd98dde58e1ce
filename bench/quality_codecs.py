"""The codec comparison of bench/quality.py (`--codecs`): every codec of the blob on the same
experts and tasks, at about the same sizes.

Each point is one upload through the hub, as bench/quality.py measures its settings: test accuracy
with the alphas the blob stores (no tuning: what a user gets) against the blob's bits per
parameter. The points aim at about 0.35, 0.6, 1.0, 1.5 and 2 bits a parameter for each codec
(positions cost H(d), each kept entry 1 + value_bits bits):
- `compeft`: ComPEFT's top-k signs, the hub's choices (balanced, unbiased); signs alone cannot
  pass ~1.6 bits, so the 2-bit point is ComPEFT with 2-bit magnitude levels;
- `compeft+2b`: the top-k with 2-bit magnitude levels;
- `dare+4b`: DARE's random subset, rescaled, with 4-bit magnitude levels (the blob's default);
- `deltadq+4b`: DeltaDQ's group-wise dropout (the same share of every 16 entries), rescaled,
  with 4-bit magnitude levels;
- `bitdelta`: every sign, one scale per tensor (its only size, ~1 bit).
Encode and decode throughput of every point are timed on one expert of the library in the same
run (`codec_speeds`). The report (`write_codec_report`) writes the table, the Pareto front of mean
gain kept against bits, and one accuracy-against-bits plot per task family.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from statistics import fmean
from typing import Any

import matplotlib.pyplot as plt
import torch

from bench.quality_plots import families, fp16_bits, mark_references
from bench.quality_summary import learned_tasks
from compeft_core import CompressedExpert
from compeft_core.codecs import CODECS
from compeft_core.compress import compress

_BALANCED = {"factorisation": "balanced", "scale": "unbiased"}
_LEVELS = {"factorisation": "balanced", "scale": "entry"}
_AS_TRAINED = {"factorisation": "as-trained", "scale": "entry"}
# compress() keyword arguments of each point (scope: the hub's default, tensor).
CODEC_POINTS: tuple[dict[str, Any], ...] = (
    *({"codec": "compeft", "density": d, **_BALANCED} for d in (0.05, 0.1, 0.2, 0.4)),
    *({"codec": "compeft", "density": d, "value_bits": 2, **_LEVELS} for d in (0.05, 0.1, 0.3)),
    *({"codec": "dare", "density": d, "value_bits": 4, **_AS_TRAINED} for d in (0.03, 0.05, 0.1)),
    *({"codec": "dare", "density": d, "value_bits": 4, **_AS_TRAINED} for d in (0.15, 0.2)),
    *({"codec": "deltadq", "density": d, "value_bits": 4, **_AS_TRAINED} for d in (0.05, 0.1, 0.2)),
    {"codec": "bitdelta", "density": 1.0, "value_bits": 0, **_AS_TRAINED},
)
# One point of each codec (at density 0.1 where it has one): enough to go through all of them.
QUICK_POINTS: tuple[dict[str, Any], ...] = tuple(
    next(p for p in CODEC_POINTS if p["codec"] == codec and p["density"] in (0.1, 1.0))
    for codec in CODECS
)
PLOT = "codecs_accuracy_vs_bits.png"
SPEED_REPEATS = 3
DEFAULT_TOLERANCE = 0.02  # gain kept a default may give up against the best point, for size


def codec_line(upload: dict[str, Any]) -> str:
    """The plot line and table group of an upload record: codec and magnitude bits."""
    bits = upload.get("value_bits", 0)
    return f"{upload.get('codec', 'compeft')}{f'+{bits}b' if bits else ''}"


def codec_speeds(tensors: dict[str, torch.Tensor], points: dict[str, dict[str, Any]]) -> dict:
    """Per point key: encode and decode (to fp16) M params/s, best of SPEED_REPEATS, on
    `tensors` (one expert of the library)."""
    params = sum(t.numel() for t in tensors.values())
    speeds = {}
    for key, arguments in points.items():
        blob = compress(tensors, **arguments).to_bytes()
        encode = _best(lambda arguments=arguments: compress(tensors, **arguments).to_bytes())
        decode = _best(lambda blob=blob: CompressedExpert.from_bytes(blob).decompress())
        speeds[key] = {
            "encode_mparams_s": params / encode / 1e6,
            "decode_mparams_s": params / decode / 1e6,
        }
    return speeds


def _best(function: Callable[[], Any]) -> float:
    times = []
    for _ in range(SPEED_REPEATS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def point_figures(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per point key: its line, mean bits/param, mean test accuracy (stored alphas), mean gain
    kept over the learned tasks and the codec's speeds."""
    tasks = results["tasks"]
    learned = learned_tasks(results) or list(tasks)
    keys = next(iter(tasks.values()))["uploads"]
    figures = {}
    for key, upload in keys.items():
        figures[key] = {
            "line": codec_line(upload),
            "density": upload["density"],
            "bits_per_param": fmean(t["uploads"][key]["bits_per_param"] for t in tasks.values()),
            "accuracy": fmean(t["settings"][key]["test_stored"] for t in tasks.values()),
            "gain_kept": fmean(
                (tasks[n]["settings"][key]["test_stored"] - tasks[n]["base"])
                / max(tasks[n]["uncompressed"] - tasks[n]["base"], 1e-9)
                for n in learned
            ),
            **results.get("codec_speeds", {}).get(key, {}),
        }
    return figures


def pareto_front(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The points no other point beats on both size and gain kept (smaller or equal bits and
    greater or equal gain, one of them strictly), by bits."""

    def dominated(key: str) -> bool:
        mine = figures[key]
        return any(
            other["bits_per_param"] <= mine["bits_per_param"]
            and other["gain_kept"] >= mine["gain_kept"]
            and (other["bits_per_param"], other["gain_kept"])
            != (mine["bits_per_param"], mine["gain_kept"])
            for name, other in figures.items()
            if name != key
        )

    return sorted(
        (k for k in figures if not dominated(k)), key=lambda k: figures[k]["bits_per_param"]
    )


def default_point(figures: dict[str, dict[str, Any]], front: list[str]) -> str:
    """The hub's default by a rule set down before the results: the smallest point of the front
    (`front`, by bits) whose gain kept is within DEFAULT_TOLERANCE of the best of any point,
    i.e. near-lossless at the least size. The best point is on the front, so one qualifies."""
    best = max(f["gain_kept"] for f in figures.values())
    return next(key for key in front if figures[key]["gain_kept"] >= best - DEFAULT_TOLERANCE)


def codec_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The last line's figures: per point bits and gain kept, the Pareto front and the default
    point it gives (`default_point`)."""
    figures = point_figures(results)
    front = pareto_front(figures)
    return {
        "tasks": len(results["tasks"]),
        "learned_tasks": len(learned_tasks(results)),
        "points": {
            key: {
                "line": f["line"],
                "bits_per_param": round(f["bits_per_param"], 4),
                "gain_kept": round(f["gain_kept"], 4),
            }
            for key, f in figures.items()
        },
        "pareto": front,
        "default": default_point(figures, front),
    }


def write_codec_report(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """The plot into `out` and the Markdown beside it (out/../results-codecs.md, or
    out/results-codecs.md when `out` has no parent folder of reports); returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    figure = _accuracy_vs_bits(results)
    figure.savefig(out / PLOT, dpi=110)
    plt.close(figure)
    summary = codec_summary(results)
    (out.parent / f"{out.name}.md").write_text(_markdown(results, summary, out))
    return summary


def _markdown(results: dict[str, Any], summary: dict[str, Any], out: Path) -> str:
    figures = point_figures(results)
    front = set(summary["pareto"])
    lines = [
        "# Codecs side by side: accuracy against bits per parameter",
        "",
        (
            f"Written by `{results.get('command', 'python -m bench.quality --codecs')}` "
            f"({results.get('wall_s', 0) / 60:.0f} minutes on this machine). "
            f"{summary['tasks']} tasks ({summary['learned_tasks']} learned: the fp16 expert beats the "
            "base by 0.1 or more), one expert each (SmolLM2-135M-Instruct, the library of "
            "docs/results.md), each point uploaded through the hub and fetched back; test accuracy "
            "with the alphas the blob stores, no tuning. Gain kept: mean over the learned tasks of "
            "(point - base) / (fp16 - base). Speeds: one expert of the library, best of "
            f"{SPEED_REPEATS}, in the same run. fp16 adapters: {fp16_bits(results):.2f} bits/param."
        ),
        "",
        "| point | bits/param | mean accuracy | gain kept | encode M params/s | decode M params/s | Pareto |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, f in sorted(
        figures.items(), key=lambda item: (item[1]["line"], item[1]["bits_per_param"])
    ):
        lines.append(
            f"| {key} | {f['bits_per_param']:.3f} | {f['accuracy']:.3f} | {f['gain_kept']:.1%} | "
            f"{f.get('encode_mparams_s', float('nan')):.0f} | {f.get('decode_mparams_s', float('nan')):.0f} | "
            f"{'yes' if key in front else ''} |"
        )
    lines += ["", *default_choice_lines(summary, results["default_setting"]), ""]
    lines += [f"![accuracy against bits per parameter]({out.name}/{PLOT})", ""]
    return "\n".join(lines)


def default_choice_lines(summary: dict[str, Any], hub_default: str) -> list[str]:
    """Which point the rule chose, the codecs of the front, the hub's default setting
    (`hub_default`, a point key) beside it, and what each other codec offers at or below the
    chosen size (docs/results.md quotes these lines)."""
    points, chosen = summary["points"], summary["default"]
    best = max(points, key=lambda k: points[k]["gain_kept"])
    pick = points[chosen]
    front_codecs = sorted({points[k]["line"] for k in summary["pareto"]})
    lines = [
        (
            f"Default by the rule (the smallest point of the Pareto front within "
            f"{DEFAULT_TOLERANCE:.0%} gain kept of the best point): **{chosen}**, "
            f"{pick['bits_per_param']:.3f} bits/param, {pick['gain_kept']:.1%} gain kept; the best "
            f"point is {best} ({points[best]['gain_kept']:.1%} at "
            f"{points[best]['bits_per_param']:.3f} bits/param). Codecs on the front: "
            f"{', '.join(front_codecs)}."
        ),
        "",
    ]
    if hub_default in points and hub_default != chosen:
        ours = points[hub_default]
        lines += [
            (
                f"The hub's default setting, {hub_default}: {ours['bits_per_param']:.3f} "
                f"bits/param, {ours['gain_kept']:.1%} gain kept; the rule's point keeps "
                f"{pick['gain_kept'] - ours['gain_kept']:+.1%} of the gain for "
                f"{pick['bits_per_param'] / ours['bits_per_param']:.2f}x its bits."
            ),
            "",
        ]
    for line in sorted({v["line"] for v in points.values()} - {pick["line"]}):
        ours = {k: v for k, v in points.items() if v["line"] == line}
        within = [k for k, v in ours.items() if v["bits_per_param"] <= pick["bits_per_param"]]
        top = max(within or ours, key=lambda k: ours[k]["gain_kept"])
        size = "at or below that size" if within else "at any size (all larger)"
        lines.append(
            f"- {line}: best {ours[top]['gain_kept']:.1%} gain kept {size} ({top}, "
            f"{ours[top]['bits_per_param']:.3f} bits/param)."
        )
    return lines


def _accuracy_vs_bits(results: dict[str, Any]) -> plt.Figure:
    tasks, grouped = results["tasks"], families(results)
    figures = point_figures(results)
    lines: dict[str, list[str]] = {}
    for key, f in sorted(figures.items(), key=lambda item: item[1]["bits_per_param"]):
        lines.setdefault(f["line"], []).append(key)
    figure, axes = plt.subplots(
        1, len(grouped), figsize=(4.2 * len(grouped), 3.6), squeeze=False, sharey=True
    )
    for axis, (name, members) in zip(axes[0], grouped.items(), strict=True):
        for line, keys in lines.items():
            axis.plot(
                [fmean(tasks[n]["uploads"][k]["bits_per_param"] for n in members) for k in keys],
                [fmean(tasks[n]["settings"][k]["test_stored"] for n in members) for k in keys],
                marker="o",
                label=line,
            )
        mark_references(axis, results, name, members)
    axes[0][0].set_ylabel("mean test accuracy (stored alphas)")
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncols=6, fontsize=7)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return figure
