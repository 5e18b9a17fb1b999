"""Statistics against the standard library and scipy called directly; summary aggregation by hand."""
import statistics

import numpy as np
import pytest
from scipy.stats import wilcoxon

from nnunetv2_unetrpp.compare.labels import LabelSpec, Target
from nnunetv2_unetrpp.compare.metrics import METRICS
from nnunetv2_unetrpp.compare.report import build_summary, summary_markdown
from nnunetv2_unetrpp.compare.stats import describe, paired_wilcoxon


def test_describe_matches_statistics_module():
    values = [0.91, 0.85, 0.40, 0.77, 0.93, 0.88]
    d = describe(values)
    assert d["mean"] == pytest.approx(statistics.mean(values))
    assert d["std"] == pytest.approx(statistics.stdev(values))
    assert d["median"] == pytest.approx(statistics.median(values))
    assert describe([0.5]) == {"mean": 0.5, "std": 0.0, "median": 0.5}


@pytest.mark.parametrize("seed", range(3))
def test_wilcoxon_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    base = rng.random(12)
    other = base + rng.normal(0.05, 0.1, 12)
    expected = wilcoxon(other, base)
    got = paired_wilcoxon(other, base)
    assert got["p"] == pytest.approx(expected.pvalue)
    assert got["statistic"] == pytest.approx(expected.statistic)
    assert got["n"] == 12


def test_wilcoxon_with_some_zero_differences_matches_scipy():
    base = [0.8, 0.7, 0.9, 0.6, 0.75, 0.85, 0.65]
    other = [0.8, 0.72, 0.95, 0.6, 0.70, 0.90, 0.70]
    expected = wilcoxon(other, base)
    assert paired_wilcoxon(other, base)["p"] == pytest.approx(expected.pvalue)


def test_wilcoxon_all_differences_zero_gives_p_one():
    assert paired_wilcoxon([0.5, 0.7, 0.9], [0.5, 0.7, 0.9]) == {"p": 1.0, "statistic": 0.0, "n": 3}


def test_build_summary_aggregates_by_hand():
    labels = LabelSpec((Target("1", "liver", (1,)), Target("tumour", "tumour", (2, 3))), None, None)
    cases = ["c0", "c1", "c2", "c3", "c4", "c5"]
    rng = np.random.default_rng(3)
    results = [{m: {k: {metric: float(rng.random()) for metric in METRICS} for k in ("1", "tumour")}
                for m in ("A", "B")} for _ in cases]
    s = build_summary(cases, ["A", "B"], results, labels, {"nsd_tolerance_mm": 1.0, "metric_definitions": "x",
                                                           "cost_definitions": "y"}, {}, [])
    dice_a1 = [r["A"]["1"]["dice"] for r in results]
    assert s["methods"]["A"]["per_label"]["1"]["dice"]["std"] == pytest.approx(statistics.stdev(dice_a1))
    assert s["methods"]["A"]["per_case"]["c2"]["tumour"]["nsd"] == results[2]["A"]["tumour"]["nsd"]
    nsd_means = [statistics.mean(r["B"][k]["nsd"] for r in results) for k in ("1", "tumour")]
    assert s["methods"]["B"]["mean"]["nsd"] == pytest.approx(statistics.mean(nsd_means))
    overall = [statistics.mean([r["B"]["1"]["hd95_mm"], r["B"]["tumour"]["hd95_mm"]]) for r in results]
    assert s["methods"]["B"]["overall"]["hd95_mm"]["median"] == pytest.approx(statistics.median(overall))
    hd_b = [r["B"]["tumour"]["hd95_vox"] for r in results]
    hd_a = [r["A"]["tumour"]["hd95_vox"] for r in results]
    assert s["wilcoxon"]["B"]["tumour"]["hd95_vox"]["p"] == pytest.approx(wilcoxon(hd_b, hd_a).pvalue)
    assert list(s["wilcoxon"]) == ["B"]  # only methods other than the first are tested
    md = summary_markdown(s)
    assert "| Method | liver Dice | liver HD95 (mm) | liver NSD | tumour Dice |" in md
    best = max(("A", "B"), key=lambda m: round(s["methods"][m]["per_label"]["1"]["dice"]["mean"], 4))
    mean, std = (s["methods"][best]["per_label"]["1"]["dice"][k] for k in ("mean", "std"))
    assert f"**{mean:.4f} ± {std:.4f}**" in md
