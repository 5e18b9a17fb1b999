"""Summary statistics over cases and the paired Wilcoxon signed-rank test between two methods."""
import warnings
from typing import Sequence

import numpy as np
from scipy.stats import wilcoxon

#: Summary key of the statistics over the per-case means across labels.
OVERALL = "overall"


def describe(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (ddof=1; 0 for a single case) and median."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "median": float(np.median(v))}


def paired_wilcoxon(values: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of paired per-case values against the baseline's.

    scipy's defaults (zero differences dropped, ``method='auto'``). When every difference is zero the test
    is undefined; the methods are then identical on these cases and p = 1.0, statistic = 0.0 is reported.
    ``n`` is the number of paired cases.
    """
    x, y = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} vs {y.shape}")
    if np.all(x == y):
        return {"p": 1.0, "statistic": 0.0, "n": int(x.size)}
    with warnings.catch_warnings():  # scipy warns when it falls back to the normal approximation
        warnings.simplefilter("ignore", UserWarning)
        result = wilcoxon(x, y)
    return {"p": float(result.pvalue), "statistic": float(result.statistic), "n": int(x.size)}
