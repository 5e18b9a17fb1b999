"""The comparison report: ``summary.json`` (every number) and ``summary.md`` (tables to paste into a paper)."""
import json
from pathlib import Path
from typing import Optional

import numpy as np

from nnunetv2_unetrpp.compare.labels import LabelSpec
from nnunetv2_unetrpp.compare.metrics import HIGHER_IS_BETTER, METRICS, PAPER_METRICS
from nnunetv2_unetrpp.compare.protocols import PROTOCOLS
from nnunetv2_unetrpp.compare.stats import OVERALL, describe, paired_wilcoxon
from nnunetv2_unetrpp.compare.verdict import verdict

DECIMALS = {"dice": 4, "nsd": 4, "hd95_mm": 2, "hd95_vox": 2, "hd95_paper_vox": 2, "hd95_paper_mm": 2}
TITLES = {"dice": "Dice", "hd95_mm": "HD95 (mm)", "hd95_vox": "HD95 (vox)", "nsd": "NSD",
          "hd95_paper_vox": "paper's HD95 (vox)", "hd95_paper_mm": "paper's HD95 (mm)"}
TITLE_OF_FIGURE = {"dice_boxplot.png": "Dice per structure", "hd95_mm_boxplot.png": "HD95 (mm) per structure",
                   "learning_curves.png": "Learning curves", "montage.png": "Representative slices"}


def build_summary(cases: list[str], method_names: list[str], results: list[dict], labels: LabelSpec,
                  settings: dict, method_info: dict[str, dict], warnings: list[str]) -> dict:
    """Aggregate per-case results (``results[i][method][key][metric]`` for ``cases[i]``) into the summary.

    Per method: per-case values, per-label and ``overall`` mean/std/median (``overall`` is over the per-case
    means across labels), and ``mean`` (mean over labels of the per-label means). Wilcoxon tests compare every
    method with the first one, per label and overall, per metric.
    """
    keys = [t.key for t in labels.targets]
    metrics = METRICS + (PAPER_METRICS if settings.get("protocol") else ())
    values = {m: {k: {metric: [r[m][k][metric] for r in results] for metric in metrics} for k in keys}
              for m in method_names}
    for m in method_names:
        values[m][OVERALL] = {metric: list(np.mean([values[m][k][metric] for k in keys], axis=0))
                              for metric in metrics}
    methods = {}
    for m in method_names:
        per_label = {k: {metric: describe(values[m][k][metric]) for metric in metrics} for k in keys}
        methods[m] = {
            **method_info.get(m, {}),
            "per_label": per_label,
            "overall": {metric: describe(values[m][OVERALL][metric]) for metric in metrics},
            "mean": {metric: float(np.mean([per_label[k][metric]["mean"] for k in keys])) for metric in metrics},
            "per_case": {c: r[m] for c, r in zip(cases, results)},
        }
    first = method_names[0]
    wilcoxon = {m: {k: {metric: paired_wilcoxon(values[m][k][metric], values[first][k][metric])
                        for metric in metrics} for k in keys + [OVERALL]}
                for m in method_names[1:]}
    return {
        "settings": settings,
        "labels": {t.key: {"name": t.name, "values": list(t.values)} for t in labels.targets},
        "cases": cases,
        "wilcoxon_baseline": first,
        "methods": methods,
        "wilcoxon": wilcoxon,
        "warnings": warnings,
    }


def write_summary_json(summary: dict, output_folder: Path) -> Path:
    """Write ``summary.json``."""
    path = output_folder / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    return path


def _mean_std(stats: dict, metric: str) -> tuple[str, float]:
    d = DECIMALS[metric]
    return f"{stats['mean']:.{d}f} ± {stats['std']:.{d}f}", round(stats["mean"], d)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _label_name(summary: dict, key: str) -> str:
    return "Mean" if key == OVERALL else summary["labels"][key]["name"]


def _label_stats(method: dict, key: str) -> dict:
    """A method's statistics of one label, or of the mean over labels."""
    return method["overall"] if key == OVERALL else method["per_label"][key]


def _costs(summary: dict) -> dict[str, dict]:
    return {n: m["cost"] for n, m in summary["methods"].items() if m.get("cost")}


def _metric_table(summary: dict, metrics: tuple[str, ...]) -> list[str]:
    """Rows = methods, columns = each label's metrics then the overall ones; the best mean per column bold."""
    columns = [(k, metric) for k in summary["labels"] for metric in metrics] + [(OVERALL, m) for m in metrics]
    header = ["Method"] + [f"{_label_name(summary, k)} {TITLES[metric]}" for k, metric in columns]
    cells = {}
    for name, method in summary["methods"].items():
        for k, metric in columns:
            cells[name, k, metric] = _mean_std(_label_stats(method, k)[metric], metric)
    rows = []
    for name in summary["methods"]:
        row = [name]
        for k, metric in columns:
            ranked = [cells[n, k, metric][1] for n in summary["methods"]]
            best = max(ranked) if HIGHER_IS_BETTER[metric] else min(ranked)
            text, value = cells[name, k, metric]
            row.append(f"**{text}**" if value == best else text)
        rows.append(row)
    return _table(header, rows)


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _wilcoxon_table(summary: dict, metrics: tuple[str, ...]) -> list[str]:
    keys = list(summary["labels"]) + [OVERALL]
    header = ["Method"] + [f"{_label_name(summary, k)} {TITLES[m]}" for k in keys for m in metrics]
    rows = [[name] + [_p(tests[k][m]["p"]) for k in keys for m in metrics]
            for name, tests in summary["wilcoxon"].items()]
    return _table(header, rows)


def _cost_table(summary: dict) -> Optional[list[str]]:
    costs = _costs(summary)
    if not costs:
        return None
    header = ["Method", "Parameters (M)", "GFLOPs / patch", "Patch size", "Forward time / patch (s)", "Epoch time (s)",
              "Training time (min)"]
    rows = []
    for name, c in costs.items():
        epoch = f"{c['epoch_seconds_mean']:.1f} ({c['epochs_logged']} epochs)" if c["epoch_seconds_mean"] else "n/a"
        total = f"{c['training_seconds'] / 60:.1f}" if c.get("training_seconds") else "n/a"
        rows.append([name, f"{c['parameters'] / 1e6:.2f}", f"{c['flops_per_patch'] / 1e9:.1f}",
                     "x".join(map(str, c["patch_size"])),
                     f"{c['inference_seconds_per_patch']:.3f} ({c['inference_device']})", epoch, total])
    return _table(header, rows)


def dice_table(summary: dict, width: int = 100) -> str:
    """Plain-text table of the mean Dice per method and structure, with the mean over structures: methods as
    rows, or structures as rows when that is the only way to stay within `width` columns."""
    keys = list(summary["labels"]) + [OVERALL]
    names = {k: _label_name(summary, k) for k in keys}
    value = {(m, k): _label_stats(method, k)["dice"]["mean"] for m, method in summary["methods"].items() for k in keys}
    rows_are_methods = [[""] + [names[k] for k in keys]] + [[m] + [f"{value[m, k]:.3f}" for k in keys]
                                                           for m in summary["methods"]]
    rows_are_labels = [["Dice"] + list(summary["methods"])] + [[names[k]] + [f"{value[m, k]:.3f}" for m in
                                                                              summary["methods"]] for k in keys]
    for rows in (rows_are_methods, rows_are_labels):
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        if max(map(len, lines)) <= width:
            break
    return "\n".join(lines)


def cost_line(summary: dict) -> Optional[str]:
    """One line with each method's training time and forward time per patch (None without model cost)."""
    costs = _costs(summary)
    if not costs:
        return None
    parts = [f"{n} " + (f"trained {c['training_seconds'] / 60:.1f} min, " if c.get("training_seconds") else "")
             + f"{c['inference_seconds_per_patch']:.2f} s/patch" for n, c in costs.items()]
    return "Cost: " + "; ".join(parts)


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def one_empty_pairs(method: dict) -> int:
    """(case, structure) pairs where exactly one mask is empty: Dice 0 and the paper's HD95 0 (two non-empty
    masks with Dice 0 are disjoint, so their HD95 is positive)."""
    return sum(1 for per_case in method["per_case"].values() for m in per_case.values()
               if m["dice"] == 0 and m["hd95_paper_vox"] == 0)


def protocol_table(summary: dict) -> list[str]:
    """The paper's table for ``--protocol``: each method's Dice (%) per structure, the paper's HD95 and the mean
    Dice, above the paper's published rows; then how often the paper's empty-mask rule set an HD95 to 0."""
    protocol = PROTOCOLS[summary["settings"]["protocol"]]
    keys = list(summary["labels"])
    header = ["Method"] + [summary["labels"][k]["name"] for k in keys] + ["HD95 (vox)", "HD95 (mm)", "DSC"]
    rows = []
    for name, method in summary["methods"].items():
        rows.append([f"{name} (this comparison)"] + [f"{100 * method['per_label'][k]['dice']['mean']:.2f}"
                                                     for k in keys]
                    + [f"{method['mean'][m]:.2f}" for m in ("hd95_paper_vox", "hd95_paper_mm")]
                    + [f"{100 * method['mean']['dice']:.2f}"])
    for r in protocol.results:
        rows.append([f"{r.method} (paper)"] + [_percent(r.dice.get(k)) for k in keys]
                    + [_percent(r.mean_hd95), "-", _percent(r.mean_dice)])
    empties = "; ".join(f"{n}: {one_empty_pairs(m)}" for n, m in summary["methods"].items())
    return [f"## The UNETR++ paper's protocol: {protocol.name}, {len(summary['cases'])} cases", "",
            f"Structures as the authors score them ({protocol.label_source}). Dice in %; HD95 as the authors "
            "computed it: medpy's hd95 (both directions pooled), in voxels as in the paper and in mm, and 0 when "
            "either mask is empty. Means over structures of the per-structure means over cases. Paper rows: "
            f"{protocol.results_source}; '-' = not reported.", "", *_table(header, rows), "",
            f"(case, structure) pairs with exactly one empty mask, whose HD95 the paper's rule counts as 0: "
            f"{empties}.", ""]


def summary_markdown(summary: dict) -> str:
    """The Markdown report: the verdict, the Dice/HD95/NSD table, the Dice box plot, model cost, the other figures,
    Wilcoxon p-values, HD95 in voxels, warnings."""
    s = summary["settings"]
    names = list(summary["methods"])
    tol = s["nsd_tolerance_mm"]
    figures = summary.get("figures", [])
    lines = [f"# Segmentation comparison: {', '.join(names)}", ""]
    if len(names) > 1:
        lines += [f"**Verdict.** {verdict(summary)}", ""]
    lines += [f"{len(summary['cases'])} cases. Mean ± std (sample std) over cases; best mean per column in **bold**. "
              f"NSD at {tol:g} mm tolerance. Definitions of the metrics: {s['metric_definitions']}.", "",
              "## Dice, HD95 (mm) and NSD", "", *_metric_table(summary, ("dice", "hd95_mm", "nsd")), ""]
    lines += [f"![{TITLE_OF_FIGURE[f]}]({f})\n" for f in figures if f == "dice_boxplot.png"]
    cost = _cost_table(summary)
    if cost:
        lines += ["## Model cost", "", f"Definitions: {s['cost_definitions']}.", "", *cost, ""]
    lines += [f"## {TITLE_OF_FIGURE[f]}\n\n![{TITLE_OF_FIGURE[f]}]({f})\n" for f in figures
              if f in ("learning_curves.png", "montage.png")]
    if summary["wilcoxon"]:
        lines += [f"## Paired Wilcoxon signed-rank test vs {names[0]} (two-sided p-values)", "",
                  *_wilcoxon_table(summary, ("dice", "hd95_mm", "nsd")), ""]
    lines += ["## HD95 in voxels (the unit of the UNETR++ paper's tables)", "",
              *_metric_table(summary, ("hd95_vox",)), ""]
    if s.get("protocol"):
        lines += protocol_table(summary)
    lines += [f"![{TITLE_OF_FIGURE[f]}]({f})\n" for f in figures if f == "hd95_mm_boxplot.png"]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    return "\n".join(lines)


def write_summary_markdown(summary: dict, output_folder: Path) -> Path:
    """Write ``summary.md``."""
    path = output_folder / "summary.md"
    path.write_text(summary_markdown(summary))
    return path
