"""The quality evaluation's outputs: raw JSON, the summary line, a Markdown report and two plots.

Everything here is computed from the results dict that bench/quality.py produces, so
`python -m bench.quality --summary` gives the same numbers from the stored JSON as the run did.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

COMPOSE_COLUMNS = (("zero-shot", None, None), ("top-1 uncompressed", "uncompressed", "top1"),
                   ("LoraHub uncompressed", "uncompressed", "composed"),
                   ("top-1 compressed", "compressed", "top1"),
                   ("LoraHub compressed", "compressed", "composed"))
LEARNED_MARGIN = 0.1


def _setting_keys(results: dict[str, Any]) -> list[str]:
    return list(next(iter(results["tasks"].values()))["settings"])


def setting_means(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per setting, averaged over tasks: test and validation accuracy, sizes, ratios."""
    tasks = results["tasks"].values()
    means = {}
    for key in _setting_keys(results):
        uploads = [t["uploads"][key] for t in tasks]
        means[key] = {
            "density": uploads[0]["density"], "scope": uploads[0]["scope"],
            "test": fmean(t["settings"][key]["test"] for t in tasks),
            "validation": fmean(max(t["settings"][key]["validation"].values()) for t in tasks),
            "bits_per_param": fmean(u["bits_per_param"] for u in uploads),
            "blob_bytes": fmean(u["blob_bytes"] for u in uploads),
            "wire_bytes": fmean(u["wire_bytes"] for u in uploads),
            "fp16_bytes": fmean(u["original_bytes"] for u in uploads),
        }
        means[key]["ratio"] = means[key]["fp16_bytes"] / means[key]["blob_bytes"]
    return means


def _compose_value(entry: dict[str, Any], base: float, variant: str | None, kind: str | None
                   ) -> float:
    return base if variant is None else entry[variant][kind]


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, averaged over tasks (accuracies on the test splits); the gains kept
    over the learned tasks only (see `learned_tasks`), None when there is none."""
    tasks = results["tasks"]
    default = results["default_setting"]
    uncompressed = fmean(t["uncompressed"] for t in tasks.values())
    compressed = fmean(t["settings"][default]["test"] for t in tasks.values())
    compose = results["compose"]
    d005 = _at_density(results, default, 0.05)
    return {
        "tasks": len(tasks),
        "base_acc": round(fmean(t["base"] for t in tasks.values()), 4),
        "uncompressed_acc": round(uncompressed, 4),
        "compressed_acc": round(compressed, 4),
        "compressed_over_uncompressed": round(compressed / uncompressed, 4),
        "merge_compressed_acc": round(fmean(_merge_test(results, "compressed").values()), 4),
        "merge_uncompressed_acc": round(fmean(_merge_test(results, "uncompressed").values()),
                                        4),
        "compose_compressed_acc": round(fmean(c["compressed"]["composed"]
                                              for c in compose.values()), 4),
        "compose_uncompressed_acc": round(fmean(c["uncompressed"]["composed"]
                                                for c in compose.values()), 4),
        "learned_tasks": len(learned_tasks(results)),
        "gain_kept": gain_kept(results, default, "test_stored"),
        "gain_kept_tuned": gain_kept(results, default, "test"),
        "gain_kept_d005": None if d005 is None else gain_kept(results, d005, "test"),
        "compose_top1_compressed_acc": round(fmean(c["compressed"]["top1"]
                                                   for c in compose.values()), 4),
        "compose_top1_uncompressed_acc": round(fmean(c["uncompressed"]["top1"]
                                                     for c in compose.values()), 4),
        "bits_per_param": round(fmean(t["uploads"][default]["bits_per_param"]
                                      for t in tasks.values()), 4),
    }


def gain_kept(results: dict[str, Any], setting: str, accuracy: str) -> float | None:
    """Mean over the learned tasks of (compressed - base) / (fp16 - base), the compressed
    accuracy being `accuracy` ("test": tuned multiplier, "test_stored": the stored alphas)."""
    tasks = results["tasks"]
    learned = learned_tasks(results)
    if not learned or any(accuracy not in tasks[n]["settings"][setting] for n in learned):
        return None  # nothing learned, or results from before `test_stored` was measured
    return round(fmean((tasks[n]["settings"][setting][accuracy] - tasks[n]["base"])
                       / (tasks[n]["uncompressed"] - tasks[n]["base"]) for n in learned), 4)


def _at_density(results: dict[str, Any], setting: str, density: float) -> str | None:
    """The key of the setting like `setting` but for its density, if the run measured it."""
    uploads = next(iter(results["tasks"].values()))["uploads"]
    like = {k: v for k, v in uploads[setting].items() if k in ("scope", "factorisation", "scale")}
    return next((key for key, upload in uploads.items() if upload["density"] == density
                 and all(upload.get(k) == v for k, v in like.items())), None)


def write_report(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """out/quality.json, out/accuracy_vs_bits.png, out/composition.png and out.md; returns the
    summary."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot_accuracy(results, out / "accuracy_vs_bits.png")
    _plot_composition(results, out / "composition.png")
    summary = summarize(results)
    out.with_suffix(".md").write_text(_markdown(results, summary, out))
    return summary


def _plot_accuracy(results: dict[str, Any], path: Path) -> None:
    tasks = results["tasks"]
    columns = min(4, len(tasks))
    rows = -(-len(tasks) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows),
                                squeeze=False, sharex=True)
    for axis, (name, task) in zip(axes.flat, tasks.items(), strict=False):
        for scope, marker in (("tensor", "o-"), ("global", "s--")):
            keys = [k for k, u in task["uploads"].items() if u["scope"] == scope]
            axis.plot([task["uploads"][k]["bits_per_param"] for k in keys],
                      [task["settings"][k]["test"] for k in keys], marker, label=f"ComPEFT {scope}")
        axis.plot([_fp16_bits(results)], [task["uncompressed"]], "k*", markersize=10,
                  label="fp16 expert")
        axis.axhline(task["base"], color="grey", linestyle=":", label="base zero-shot")
        axis.set_xscale("log")
        axis.set_title(name, fontsize=9)
        axis.set_ylim(0, 1)
    for axis in axes.flat[len(tasks):]:
        axis.axis("off")
    for axis in axes[-1]:
        axis.set_xlabel("bits / parameter")
    for axis in axes[:, 0]:
        axis.set_ylabel("test accuracy")
    figure.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", ncols=4,
                  fontsize=8)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_composition(results: dict[str, Any], path: Path) -> None:
    names = list(results["compose"])
    width = 0.8 / len(COMPOSE_COLUMNS)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(names)), 3.6))
    for index, (label, variant, kind) in enumerate(COMPOSE_COLUMNS):
        values = [_compose_value(results["compose"][n], results["tasks"][n]["base"], variant, kind)
                  for n in names]
        axis.bar([i + index * width for i in range(len(names))], values, width, label=label)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=25,
                    ha="right", fontsize=8)
    axis.set_ylabel("test accuracy (task left out)")
    axis.set_ylim(0, 1.25)  # room for the legend above the bars
    axis.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axis.legend(fontsize=7, ncols=3, loc="upper center")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _markdown(results: dict[str, Any], summary: dict[str, Any], out: Path) -> str:
    sections = (_setup(results, out), _accuracy_table(results, summary), _kept_table(results),
                _merge_table(results),
                _compose_table(results), _bytes_table(results), _findings(results, summary),
                _caveats(results),
                [f"![accuracy vs bits per parameter]({out.name}/accuracy_vs_bits.png)", "",
                 f"![composition]({out.name}/composition.png)", "",
                 "Summary (`python -m bench.quality --summary`):", "", "```json",
                 json.dumps(summary), "```"])
    return "\n".join(line for section in sections for line in [*section, ""])


def _setup(results: dict[str, Any], out: Path) -> list[str]:
    tasks, budget = results["tasks"], results["budget"]
    kind = budget["library"]["kind"]
    lines = [
        "# Quality: does a ComPEFT-compressed expert keep its skill?", "",
        (f"Produced by `{results['command']}` (seed {results['seed']}, "
        f"{results['wall_s'] / 60:.0f} min on 2 shared CPU cores); raw numbers in "
        f"[`{out.name}/quality.json`]({out.name}/quality.json). Accuracies are percentages on "
        "each task's test split; every choice (alpha multiplier, merge coefficient) was made on "
        "the validation split."), "",
        "## Setup", "",
        ("- Base model: SmolLM2-135M-Instruct (`bench/smollm2.py`), forward passes under bf16 "
        "autocast (3x faster than float32 on this CPU)."),
        _experts_line(budget["library"]),
        ("- Prompt: `<instruction naming the labels>\\nInput: <input, cut to "
         f"{kind['max_input_tokens']} tokens>\\nAnswer:`; score: rank classification over the "
         "labels' first tokens (one forward pass per example)."),
        ("- Compression: each expert uploaded to a real hub (`bench/hub_process.py`: uvicorn, "
        "SQLite, local blob folder) once per setting, as revisions of one expert; the hub "
        "compresses; `HubClient.load` fetches and decodes with the stored per-segment default "
        f"alphas. An alpha multiplier m (grid {budget['alpha_multipliers']}) then scales the "
        "decoded A and B, so the update by m^2."),
        (f"- Merging: task arithmetic of all {len(tasks)} experts by each method of section 2 "
         f"(`merge_lora_experts`, `merge_lora_products`), one coefficient per method from "
         f"{budget['merge_coefficients']}."),
        (f"- Composition: each task left out; the hub's search with {budget['shots']} of its "
        f"training inputs returns the {budget['retrieved']} closest other experts; LoraHub "
        f"({budget['compose_steps']} NGOpt steps) composes them on those {budget['shots']} "
        f"shots. Compressed experts: setting {results['default_setting']}, each with the "
        "multiplier tuned on its own task's validation split."), "",
        "## Tasks", "",
        "| task | labels | train / val / test | source |", "|---|---|---|---|",
    ]
    for name, task in tasks.items():
        splits = task["splits"]
        lines.append(f"| {name} | {', '.join(task['labels'])} | {splits['train']} / "
                     f"{splits['validation']} / {splits['test']} | {task['source']} |")
    return lines


def _accuracy_table(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    tasks, keys, means = results["tasks"], _setting_keys(results), setting_means(results)
    lines = ["## 1. Accuracy per task and setting", "",
             "Cells: test accuracy (alpha multiplier chosen on validation).", "",
             "| task | base | fp16 expert | " + " | ".join(keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for name, task in tasks.items():
        cells = [f"{_pct(task['settings'][k]['test'])} ({task['settings'][k]['multiplier']:g})"
                 for k in keys]
        lines.append(f"| {name} | {_pct(task['base'])} | {_pct(task['uncompressed'])} | "
                     + " | ".join(cells) + " |")
    lines.append(f"| **mean** | {_pct(summary['base_acc'])} | "
                 f"{_pct(summary['uncompressed_acc'])} | "
                 + " | ".join(_pct(means[k]["test"]) for k in keys) + " |")
    return lines


def _experts_line(library: dict[str, Any]) -> str:
    kind, schedule = library["kind"], library["schedule"]
    return (f"- Experts (library `{kind['name']}`, `bench/quality_library.py`): LoRA r={kind['rank']}"
            f" on {', '.join(kind['targets'])} (lora_alpha {2 * kind['rank']}), AdamW, batches of "
            f"{schedule['batch_size']}, lr {schedule['lr']}, up to {schedule['max_steps']} steps, "
            f"kept at the best validation score of every {schedule['eval_every']} steps; loss on "
            f"the answer tokens only; stored in fp16 (`bench/quality_experts/{kind['name']}/`).")


def _merge_test(results: dict[str, Any], variant: str) -> dict[str, float]:
    """Per task, the test accuracy of the merge by weights (A's with A's, B's with B's): the
    summary's merge figures, as before the product methods existed (docs/results holds, until
    its next full run, results from before them: one merge per variant)."""
    merges = results["merge"][variant]
    return merges.get("weights", merges)["test"]


def _merge_table(results: dict[str, Any]) -> list[str]:
    tasks, merge = results["tasks"], results["merge"]
    lines = ["## 2. Merging (task arithmetic of all experts)", "",
             ("Methods: `weights` adds A's to A's and B's to B's (LoraHub-like, with cross "
             "terms); `product` adds the updates B·A exactly (rank Σr); `product-svd` truncates "
             "that sum back to rank r by SVD; `ties-product` is TIES of the dense updates, "
             "truncated to rank r."), "",
             "| variant | method | rank | coefficient | mean val | mean test | "
             + " | ".join(tasks) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(tasks)]
    for variant, methods in merge.items():
        for method, entry in methods.items():
            lines.append(f"| {variant} | {method} | {entry['rank']} | {entry['coefficient']:g} | "
                         f"{_pct(entry['validation'][format(entry['coefficient'], 'g')])} | "
                         f"{_pct(fmean(entry['test'].values()))} | "
                         + " | ".join(_pct(entry["test"][n]) for n in tasks) + " |")
    return lines


def _compose_table(results: dict[str, Any]) -> list[str]:
    tasks, compose = results["tasks"], results["compose"]
    lines = ["## 3. Composition on an unseen task", "",
             "| task left out | retrieved | " + " | ".join(c[0] for c in COMPOSE_COLUMNS) + " |",
             "|---|---|" + "---|" * len(COMPOSE_COLUMNS)]
    for name, entry in compose.items():
        values = [_compose_value(entry, tasks[name]["base"], v, k) for _, v, k in COMPOSE_COLUMNS]
        lines.append(f"| {name} | {', '.join(entry['retrieved'])} | "
                     + " | ".join(_pct(v) for v in values) + " |")
    lines.append("| **mean** | | " + " | ".join(
        _pct(fmean(_compose_value(compose[n], tasks[n]["base"], v, k) for n in compose))
        for _, v, k in COMPOSE_COLUMNS) + " |")
    return lines


def learned_tasks(results: dict[str, Any]) -> list[str]:
    """Tasks whose fp16 expert beats the base model by LEARNED_MARGIN: only there can a
    compressed expert lose a skill (elsewhere there is none to lose)."""
    return [name for name, task in results["tasks"].items()
            if task["uncompressed"] - task["base"] >= LEARNED_MARGIN]


def _fp16_bits(results: dict[str, Any]) -> float:
    uploads = [u for t in results["tasks"].values() for u in t["uploads"].values()]
    return fmean(8 * u["original_bytes"] / u["num_params"] for u in uploads)


def _kept_table(results: dict[str, Any]) -> list[str]:
    tasks = results["tasks"]
    learned = learned_tasks(results)
    if not learned:
        return []
    gain = fmean(tasks[n]["uncompressed"] - tasks[n]["base"] for n in learned)
    lines = [(f"### On the tasks the experts learned ({', '.join(learned)}: fp16 expert at least "
             f"{_pct(LEARNED_MARGIN)} points above the base model)"), "",
             "Gain kept: (compressed - base) / (fp16 expert - base), over these tasks' means.", "",
             "| setting | bits/param | mean test acc | gain kept |", "|---|---|---|---|",
             (f"| fp16 expert | {_fp16_bits(results):.2f} | "
             f"{_pct(fmean(tasks[n]['uncompressed'] for n in learned))} | 100% |")]
    for key, m in setting_means(results).items():
        accuracy = fmean(tasks[n]["settings"][key]["test"] for n in learned)
        kept = (accuracy - fmean(tasks[n]["base"] for n in learned)) / gain
        lines.append(f"| {key} | {m['bits_per_param']:.3f} | {_pct(accuracy)} | "
                     f"{100 * kept:.0f}% |")
    return lines


def _bytes_table(results: dict[str, Any]) -> list[str]:
    lines = ["## 4. Bytes moved per setting (means over tasks)", "",
             ("| setting | bits/param | blob bytes | HTTP bytes sent | fp16 adapter bytes | "
             "smaller by | mean test acc | mean best val acc |"),
             "|---|---|---|---|---|---|---|---|"]
    for key, m in setting_means(results).items():
        lines.append(f"| {key} | {m['bits_per_param']:.3f} | {m['blob_bytes']:,.0f} | "
                     f"{m['wire_bytes']:,.0f} | {m['fp16_bytes']:,.0f} | {m['ratio']:.1f}x | "
                     f"{_pct(m['test'])} | {_pct(m['validation'])} |")
    return lines


def _findings(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Where compression loses, and which setting the validation data favour."""
    tasks, default = results["tasks"], results["default_setting"]
    means = setting_means(results)
    drop, worst = max((t["uncompressed"] - t["settings"][default]["test"], n)
                      for n, t in tasks.items())
    best = max(means, key=lambda k: (means[k]["validation"], -means[k]["bits_per_param"]))
    lines = ["## Findings (generated from the numbers above)", "",
             (f"- Default setting {default}: mean {_pct(summary['compressed_acc'])} vs "
             f"{_pct(summary['uncompressed_acc'])} for the fp16 experts (ratio "
             f"{summary['compressed_over_uncompressed']:.3f}); largest drop {_pct(drop)} points "
             f"({worst})."),
             (f"- Highest mean validation accuracy: {best} ({_pct(means[best]['validation'])} "
             f"val, {_pct(means[best]['test'])} test, {means[best]['bits_per_param']:.2f} "
             "bits/param).")]
    for density in sorted({m["density"] for m in means.values()}):
        pair = {m["scope"]: m for m in means.values() if m["density"] == density}
        if len(pair) == 2:
            lines.append(f"- Density {density:g}: tensor scope {_pct(pair['tensor']['test'])} "
                         f"vs global {_pct(pair['global']['test'])} test "
                         f"({_pct(pair['tensor']['validation'])} vs "
                         f"{_pct(pair['global']['validation'])} validation).")
    for key in means:
        drops = [n for n, t in tasks.items()
                 if t["settings"][key]["test"] < t["uncompressed"] - 0.05]
        if drops:
            lines.append(f"- {key}: more than 5 points below the fp16 expert on "
                         f"{', '.join(drops)}.")
    return lines


def _caveats(results: dict[str, Any]) -> list[str]:
    test = min(task["splits"]["test"] for task in results["tasks"].values())
    budget = results["budget"]
    top = max(budget["alpha_multipliers"])
    cells = [t["settings"][k]["multiplier"] for t in results["tasks"].values()
             for k in t["settings"]]
    lines = ["## Limits of this evaluation", "",
             (f"- Small test splits (at least {test} examples per task): one accuracy has a "
              f"standard error of up to {_pct((0.25 / test) ** 0.5)} points; differences of a "
              "few points between settings on one task are noise, means over tasks less so."),
             ("- Small, briefly trained experts on a 135M model; tasks where the fp16 expert does "
              "not beat the base model say nothing about compression."),
             (f"- {sum(m == top for m in cells)} of {len(cells)} (task, setting) cells picked the "
              f"largest alpha multiplier of the grid ({top:g}); they might gain from a larger "
              "one."),
             ("- bf16 autocast in every forward pass: small differences in the update are rounded "
              "the same way for every setting."),
             ("- LoraHub combines A's with A's and B's with B's (as LoraHub's reference code "
              "does), not the products B A; the merge is of experts for unrelated tasks with "
              "different label sets.")]
    edges = [f"{v} by {m}" for v, methods in results["merge"].items()
             for m, e in methods.items()
             if e["coefficient"] in (min(budget["merge_coefficients"]),
                                     max(budget["merge_coefficients"]))]
    if edges:
        lines.append(f"- Merge coefficient at the edge of its grid for: {', '.join(edges)}.")
    return lines
