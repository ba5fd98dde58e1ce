"""The quality evaluation's Markdown report (FOLDER.md beside the results FOLDER), from the
results dict of bench/quality.py; the numbers come from bench/quality_summary.py and the plots
from bench/quality_plots.py, so a report can be rewritten from the stored JSON alone."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean
from typing import Any

from bench.quality_codecs import codec_summary, default_choice_lines
from bench.quality_plots import (
    PLOTS,
    composition_columns,
    composition_value,
    family,
    fp16_bits,
    write_plots,
)
from bench.quality_summary import (
    LEARNED_MARGIN,
    SUMMARY_METHOD,
    SUMMARY_MODE,
    Goal,
    compose_means,
    goals,
    learned_tasks,
    merge_means,
    setting_keys,
    setting_means,
    summarize,
)

RESULTS_FILE = "quality.json"
CODECS_DIR = "results-codecs"  # the codec comparison's folder, beside this report's
MERGE_METHODS_TEXT = (
    "`weights` adds A's to A's and B's to B's (LoraHub-like, with cross terms); `product` adds "
    "the updates B·A exactly (rank Σr); `product-svd` truncates that sum back to rank r by SVD; "
    "`ties-product` is TIES of the dense updates, truncated to rank r."
)


def write_report(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """The plots into `out` (beside its RESULTS_FILE) and the report out.md; returns the
    summary."""
    out.mkdir(parents=True, exist_ok=True)
    write_plots(results, learned_tasks(results), out)
    summary = summarize(results)
    out.with_suffix(".md").write_text(_markdown(results, summary, out))
    return summary


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _image(out: Path, plot: str, title: str) -> list[str]:
    return [f"![{title}]({out.name}/{plot})"]


def _markdown(results: dict[str, Any], summary: dict[str, Any], out: Path) -> str:
    accuracy_plot, fidelity_plot, composition_plot = PLOTS
    sections = (
        _header(results, out),
        _goals_table(goals(results)),
        _setup(results),
        _tasks_table(results),
        _kept_table(results),
        _image(out, accuracy_plot, "accuracy vs bits per parameter, per task family"),
        _image(out, fidelity_plot, "gain kept vs the upload's fidelity"),
        _accuracy_table(results),
        _merge_table(results),
        _compose_table(results),
        _image(out, composition_plot, "composition on unseen tasks"),
        _bytes_table(results),
        _codec_choice(out),
        _findings(results, summary),
        _caveats(results),
        [
            "Summary (`python -m bench.quality --summary`):",
            "",
            "```json",
            json.dumps(summary),
            "```",
        ],
    )
    return "\n".join(line for section in sections for line in [*section, ""])


def _header(results: dict[str, Any], out: Path) -> list[str]:
    return [
        "# Quality: does a ComPEFT-compressed expert keep its skill?",
        "",
        (
            f"Produced by `{results['command']}` (seed {results['seed']}, "
            f"{results['wall_s'] / 60:.0f} min on 2 shared CPU cores); raw numbers in "
            f"[`{out.name}/{RESULTS_FILE}`]({out.name}/{RESULTS_FILE}); rewritten from them by "
            "`python -m bench.quality --report`. Accuracies are percentages on each task's "
            "test split; every choice (alpha multiplier, merge coefficient) was made on the "
            "validation split."
        ),
    ]


def _goal_value(goal: Goal) -> str:
    if goal.measured is None:
        return "not measured"
    return f"{goal.measured:.3g}" if abs(goal.target) >= 2 else f"{goal.measured:+.4f}".lstrip("+")


def _goals_table(measured: list[Goal]) -> list[str]:
    lines = [
        "## Goals",
        "",
        (
            "Gains kept are means over the learned tasks of (compressed − base) / (fp16 − "
            "base); differences are of mean test accuracy (0.01 = 1 point)."
        ),
        "",
        "| goal | target | measured | |",
        "|---|---|---|---|",
    ]
    for goal in measured:
        verdict = (
            "met"
            if goal.met
            else ("not measured" if goal.shortfall is None else f"missed by {goal.shortfall:.3g}")
        )
        lines.append(
            f"| {goal.name} | {'>' if goal.strict else '>='} {goal.target:g} | "
            f"{_goal_value(goal)} | {verdict} |"
        )
    return lines


def _setup(results: dict[str, Any]) -> list[str]:
    tasks, budget = results["tasks"], results["budget"]
    kind = budget["library"]["kind"]
    return [
        "## Setup",
        "",
        (
            "- Base model: SmolLM2-135M-Instruct (`bench/smollm2.py`), forward passes under bf16 "
            "autocast (3x faster than float32 on this CPU)."
        ),
        _experts_line(budget["library"]),
        (
            "- Prompt: `<instruction naming the labels>\\nInput: <input, cut to "
            f"{kind['max_input_tokens']} tokens>\\nAnswer:`; score: rank classification over the "
            "labels' first tokens (one forward pass per example)."
        ),
        (
            "- Compression: each expert uploaded to a real hub (`bench/hub_process.py`: uvicorn, "
            "SQLite, local blob folder) once per setting (`factorisation/scale scope@density`), as "
            "revisions of one expert; the hub compresses and reports the fidelity; "
            "`HubClient.load` fetches and decodes. *Stored alpha*: the decoded tensors as they "
            "come, what a user gets. *Tuned*: an alpha multiplier m from "
            f"{budget['alpha_multipliers']} picked on validation scales the decoded A and B (the "
            "update by m²)."
        ),
        (
            f"- Merging: task arithmetic of all {len(tasks)} experts by each method, one "
            f"coefficient per method from {budget['merge_coefficients']}. {MERGE_METHODS_TEXT}"
        ),
        (
            f"- Composition: each task left out; the hub's search with {budget['shots']} of its "
            f"training inputs returns the {budget['retrieved']} closest other experts; LoraHub "
            f"({budget['compose_steps']} NGOpt steps, L1 weight 0.05 × shots against the mean "
            "loss, as LoraHub's reference divides its summed loss by the shots) weights them on "
            f"those {budget['shots']} shots, in the "
            f"modes {', '.join(budget['compose_modes'])} (`lorahub`: A's and B's weighted, "
            "LoraHub's own; `cat`: the products). Compressed experts: setting "
            f"{results['default_setting']} with the stored alphas."
        ),
    ]


def _experts_line(library: dict[str, Any]) -> str:
    kind, schedule = library["kind"], library["schedule"]
    return (
        f"- Experts (library `{kind['name']}`, `bench/quality_library.py`): LoRA r={kind['rank']}"
        f" on {', '.join(kind['targets'])} (lora_alpha {2 * kind['rank']}), AdamW, batches of "
        f"{schedule['batch_size']}, lr {schedule['lr']}, up to {schedule['max_steps']} steps, "
        f"kept at the best validation score of every {schedule['eval_every']} steps; loss on "
        f"the answer tokens only; stored in fp16 (`bench/quality_experts/{kind['name']}/`)."
    )


def _tasks_table(results: dict[str, Any]) -> list[str]:
    learned = learned_tasks(results)
    lines = [
        "## Tasks",
        "",
        (
            f"Learned: the fp16 expert beats the base model by at least {_pct(LEARNED_MARGIN)} "
            f"points ({len(learned)} of {len(results['tasks'])} tasks); only there can "
            "compression lose a skill."
        ),
        "",
        "| task | family | labels | train / val / test | base | fp16 expert | learned |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, task in results["tasks"].items():
        splits = task["splits"]
        lines.append(
            f"| {name} | {family(task['source'])} | {', '.join(task['labels'])} | "
            f"{splits['train']} / {splits['validation']} / {splits['test']} | "
            f"{_pct(task['base'])} | {_pct(task['uncompressed'])} | "
            f"{'yes' if name in learned else 'no'} |"
        )
    sources = sorted({task["source"] for task in results["tasks"].values()})
    return [*lines, "", "Sources: " + "; ".join(sources) + "."]


def _kept_table(results: dict[str, Any]) -> list[str]:
    tasks, learned = results["tasks"], learned_tasks(results)
    if not learned:
        return []
    base = fmean(tasks[n]["base"] for n in learned)
    gain = fmean(tasks[n]["uncompressed"] for n in learned) - base
    lines = [
        "## 1. The skill kept, on the learned tasks",
        "",
        (
            "Gain kept here: of the means over the learned tasks, (compressed − base) / (fp16 − "
            "base); the goals' figure is the mean of the per-task ratios. Relative error: the "
            "upload's fidelity, ‖ΔW − ΔŴ‖ / ‖ΔW‖ per module, mean over modules and tasks."
        ),
        "",
        (
            "| setting | bits/param | smaller than fp16 | relative error | acc, stored alpha | "
            "gain kept | acc, tuned | gain kept, tuned |"
        ),
        "|---|---|---|---|---|---|---|---|",
        (f"| fp16 expert | {fp16_bits(results):.2f} | 1x | 0 | {_pct(base + gain)} | 100% | | |"),
    ]
    for key, means in setting_means(results).items():
        stored, tuned = (
            fmean(tasks[n]["settings"][key][field] for n in learned)
            for field in ("test_stored", "test")
        )
        lines.append(
            f"| {key} | {means['bits_per_param']:.3f} | {means['ratio']:.1f}x | "
            f"{means['relative_error']:.3f} | {_pct(stored)} | "
            f"{100 * (stored - base) / gain:.0f}% | {_pct(tuned)} | "
            f"{100 * (tuned - base) / gain:.0f}% |"
        )
    return lines


def _accuracy_table(results: dict[str, Any]) -> list[str]:
    tasks, keys, means = results["tasks"], setting_keys(results), setting_means(results)
    lines = [
        "## 2. Accuracy per task and setting",
        "",
        "Cells: test accuracy with the stored alpha / with the tuned multiplier (m).",
        "",
        "| task | base | fp16 expert | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for name, task in tasks.items():
        cells = [
            f"{_pct(s['test_stored'])} / {_pct(s['test'])} ({s['multiplier']:g})"
            for s in (task["settings"][k] for k in keys)
        ]
        lines.append(
            f"| {name} | {_pct(task['base'])} | {_pct(task['uncompressed'])} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append(
        f"| **mean** | {_pct(fmean(t['base'] for t in tasks.values()))} | "
        f"{_pct(fmean(t['uncompressed'] for t in tasks.values()))} | "
        + " | ".join(f"{_pct(means[k]['test_stored'])} / {_pct(means[k]['test'])}" for k in keys)
        + " |"
    )
    return lines


def _merge_table(results: dict[str, Any]) -> list[str]:
    tasks, merge = results["tasks"], results["merge"]
    lines = [
        "## 3. Merging (task arithmetic of all experts)",
        "",
        f"{MERGE_METHODS_TEXT} The summary's merge figures are `{SUMMARY_METHOD}`'s.",
        "",
        "| variant | method | rank | coefficient | mean val | mean test | "
        + " | ".join(tasks)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(tasks),
    ]
    for variant, methods in merge.items():
        for method, entry in methods.items():
            lines.append(
                f"| {variant} | {method} | {entry['rank']} | {entry['coefficient']:g} | "
                f"{_pct(entry['validation'][format(entry['coefficient'], 'g')])} | "
                f"{_pct(fmean(entry['test'].values()))} | "
                + " | ".join(_pct(entry["test"][n]) for n in tasks)
                + " |"
            )
    return lines


def _compose_table(results: dict[str, Any]) -> list[str]:
    compose, columns = results["compose"], composition_columns(results)
    lines = [
        "## 4. Composition on an unseen task",
        "",
        (
            "`top1`: the first retrieved expert alone; `lorahub`, `cat`: LoraHub's search over "
            f"the {results['budget']['retrieved']} retrieved experts in that mode."
        ),
        "",
        "| task left out | retrieved | " + " | ".join(c[0] for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for name, entry in compose.items():
        lines.append(
            f"| {name} | {', '.join(entry['retrieved'])} | "
            + " | ".join(_pct(composition_value(results, name, v, m)) for _, v, m in columns)
            + " |"
        )
    lines.append(
        "| **mean** | | "
        + " | ".join(
            _pct(fmean(composition_value(results, n, v, m) for n in compose)) for _, v, m in columns
        )
        + " |"
    )
    weights = [
        abs(w)
        for entry in compose.values()
        for variant in ("uncompressed", "compressed")
        for w in entry[variant][SUMMARY_MODE]["weights"]
    ]
    return [*lines, "", f"Mean |weight| found by the {SUMMARY_MODE} search: {fmean(weights):.2f}."]


def _bytes_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "## 5. Bytes moved per setting (means over tasks)",
        "",
        (
            "| setting | bits/param | blob bytes | HTTP bytes sent | fp16 adapter bytes | "
            "smaller by |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for key, m in setting_means(results).items():
        lines.append(
            f"| {key} | {m['bits_per_param']:.3f} | {m['blob_bytes']:,.0f} | "
            f"{m['wire_bytes']:,.0f} | {m['fp16_bytes']:,.0f} | {m['ratio']:.1f}x |"
        )
    return lines


def _codec_choice(out: Path) -> list[str]:
    """Section 6 from the codec comparison's stored results beside this report's, if any."""
    stored = out.parent / CODECS_DIR / RESULTS_FILE
    if not stored.is_file():
        return ["## 6. The default codec", "", f"No codec comparison in {CODECS_DIR}/ yet."]
    codec_results = json.loads(stored.read_text())
    return [
        "## 6. The default codec",
        "",
        (
            f"From the codec comparison ([{CODECS_DIR}.md]({CODECS_DIR}.md): every codec of the "
            "blob on these experts and tasks at about 0.35 to 2 bits/param, stored alphas, no "
            "tuning), by a rule set down before its results were summarised:"
        ),
        "",
        *default_choice_lines(codec_summary(codec_results), codec_results["default_setting"]),
    ]


def _findings(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Where compression loses, which setting the validation data favour, which merge and
    composition won."""
    tasks, default = results["tasks"], results["default_setting"]
    means = setting_means(results)
    drop, worst = max(
        (t["uncompressed"] - t["settings"][default]["test_stored"], n) for n, t in tasks.items()
    )
    best = max(means, key=lambda k: (means[k]["validation"], -means[k]["bits_per_param"]))
    merged, composed = merge_means(results), compose_means(results)
    lines = [
        "## Findings (generated from the numbers above)",
        "",
        (
            f"- Default setting {default}, stored alpha: mean {_pct(means[default]['test_stored'])}"
            f" vs {_pct(summary['uncompressed_acc'])} for the fp16 experts; largest drop "
            f"{_pct(drop)} points ({worst})."
        ),
        (
            f"- Highest mean validation accuracy (tuned): {best} "
            f"({_pct(means[best]['validation'])} val, {_pct(means[best]['test'])} test, "
            f"{means[best]['bits_per_param']:.2f} bits/param)."
        ),
    ]
    for variant, methods in merged.items():
        top = max(methods, key=methods.__getitem__)
        lines.append(f"- Best merge of the {variant} experts: {top} ({_pct(methods[top])}).")
    for variant, modes in composed.items():
        lines.append(
            f"- Composition of the {variant} experts: "
            + ", ".join(f"{mode} {_pct(value)}" for mode, value in modes.items())
            + "."
        )
    for key in means:
        drops = [
            n
            for n, t in tasks.items()
            if t["settings"][key]["test_stored"] < t["uncompressed"] - 0.05
        ]
        if drops:
            lines.append(
                f"- {key}, stored alpha: more than 5 points below the fp16 expert on "
                f"{', '.join(drops)}."
            )
    return lines


def _caveats(results: dict[str, Any]) -> list[str]:
    test = min(task["splits"]["test"] for task in results["tasks"].values())
    budget = results["budget"]
    top = max(budget["alpha_multipliers"])
    cells = [
        t["settings"][k]["multiplier"] for t in results["tasks"].values() for k in t["settings"]
    ]
    lines = [
        "## Limits of this evaluation",
        "",
        (
            f"- Small test splits (at least {test} examples per task): one accuracy has a "
            f"standard error of up to {_pct((0.25 / test) ** 0.5)} points; differences of a "
            "few points between settings on one task are noise, means over tasks less so."
        ),
        (
            "- Small experts on a 135M model; tasks where the fp16 expert does not beat the "
            "base model say nothing about compression."
        ),
        (
            f"- {sum(m == top for m in cells)} of {len(cells)} (task, setting) cells picked the "
            f"largest alpha multiplier of the grid ({top:g}); they might gain from a larger "
            "one."
        ),
        (
            "- bf16 autocast in every forward pass: small differences in the update are rounded "
            "the same way for every setting."
        ),
        (
            "- The merges are of experts for unrelated tasks with different label sets: a "
            "merge keeps part of each skill at best."
        ),
    ]
    edges = [
        f"{v} by {m}"
        for v, methods in results["merge"].items()
        for m, e in methods.items()
        if e["coefficient"]
        in (min(budget["merge_coefficients"]), max(budget["merge_coefficients"]))
    ]
    if edges:
        lines.append(f"- Merge coefficient at the edge of its grid for: {', '.join(edges)}.")
    return lines
