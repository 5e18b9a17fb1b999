"""The verdict: the comparison's result in one or two plain sentences per compared pair, computed from the summary.

Each method after the first is set against the first (the Wilcoxon baseline): which has the higher mean Dice,
on which structures each is ahead (by at least ``MARGIN`` mean Dice; closer is "on par"), whether the paired
test of the per-case mean Dice is significant at ``ALPHA``, and, when model cost is known, how their training
time (sum of logged epoch times) and forward time per patch compare.
"""
from nnunetv2_unetrpp.compare.stats import OVERALL

MARGIN, ALPHA = 0.01, 0.05


def _names(summary: dict, keys: list[str]) -> str:
    names = [summary["labels"][k]["name"] for k in keys]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _speed(verb: str, seconds: float, baseline_seconds: float, baseline: str, unit: str, scale: float,
           decimals: int) -> str:
    """'trained 1.4x faster than B (4.1 vs 5.8 min)' style comparison of two durations, shown in seconds / `scale`."""
    ratio = baseline_seconds / seconds if seconds > 0 else float("inf")
    how = ("about as fast as" if abs(ratio - 1) < 0.05 else
           f"{ratio:.1f}x faster than" if ratio > 1 else f"{1 / ratio:.1f}x slower than")
    return (f"{verb} {how} {baseline} ({seconds / scale:.{decimals}f} vs {baseline_seconds / scale:.{decimals}f} "
            f"{unit})")


def minimum_p(n: int) -> float:
    """Smallest two-sided p-value the exact Wilcoxon signed-rank test can give with `n` non-zero pairs."""
    return min(1.0, 2.0 / 2 ** n)


def pair_verdict(summary: dict, name: str) -> str:
    """Sentences comparing method `name` with the first method of the summary."""
    first = summary["wilcoxon_baseline"]
    a, b = summary["methods"][name], summary["methods"][first]
    keys = list(summary["labels"])
    diff = {k: a["per_label"][k]["dice"]["mean"] - b["per_label"][k]["dice"]["mean"] for k in keys}
    ahead = [k for k in keys if diff[k] >= MARGIN]
    behind = [k for k in keys if diff[k] <= -MARGIN]
    mean_a, mean_b = a["overall"]["dice"]["mean"], b["overall"]["dice"]["mean"]
    leader, other = (name, first) if mean_a >= mean_b else (first, name)
    parts = []
    if ahead:
        parts.append(f"{name} is ahead on {_names(summary, ahead)}")
    if behind:
        parts.append(f"{first} is ahead on {_names(summary, behind)}")
    level = [k for k in keys if k not in ahead + behind]
    if level:
        parts.append(f"they are on par (within {MARGIN:g}) on {_names(summary, level)}")
    test = summary["wilcoxon"][name][OVERALL]["dice"]
    n = test["n"]
    significant = test["p"] < ALPHA
    tested = (f"paired Wilcoxon test over {n} cases {'significant' if significant else 'not significant'}, "
              f"p = {test['p']:.3g}")
    if not significant and minimum_p(n) >= ALPHA:
        tested += f": with {n} cases no difference can reach p < {ALPHA:g}"
    text = (f"{leader} has the higher mean Dice ({max(mean_a, mean_b):.3f} vs {min(mean_a, mean_b):.3f} for {other}; "
            f"{tested}); " + "; ".join(parts) + ".")
    cost_a, cost_b = a.get("cost"), b.get("cost")
    if cost_a and cost_b:
        speeds = []
        if cost_a.get("training_seconds") and cost_b.get("training_seconds"):
            speeds.append(_speed("trained", cost_a["training_seconds"], cost_b["training_seconds"], first, "min", 60,
                                 1))
        speeds.append(_speed("predicted", cost_a["inference_seconds_per_patch"], cost_b["inference_seconds_per_patch"],
                             first, f"s per patch on {cost_a['inference_device']}", 1, 2))
        text += f" {name} " + " and ".join(speeds) + "."
    return text


def verdict(summary: dict) -> str:
    """The verdict paragraph: one pair verdict per method after the first (empty for a single method)."""
    return " ".join(pair_verdict(summary, name) for name in list(summary["methods"])[1:])
