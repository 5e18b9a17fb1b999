"""Make `tests/data/medpy_hd95_reference.json`: medpy's `hd95` (the function the UNETR++ authors' evaluation
scripts call) on a few mask pairs, the reference that `tests/test_paper_protocol.py` holds
`compare.metrics.paper_hd95` against.

Runs in a throwaway environment with medpy, never in this project's:

    python3 -m venv --system-site-packages /tmp/medpyenv
    /tmp/medpyenv/bin/pip install --no-deps medpy==0.5.2
    /tmp/medpyenv/bin/python tests/data/make_medpy_hd95_reference.py

Each pair is stored as its shape and the voxel coordinates of both masks, so the test needs no random
generator; medpy's value is recorded without spacing (voxels, as in the paper) and with an anisotropic one.
"""
from __future__ import annotations

import json
from pathlib import Path

import medpy
import numpy as np
from medpy.metric.binary import hd95
from scipy import ndimage

SPACING = (3.0, 0.8, 0.8)


def blobs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return ndimage.binary_dilation(rng.random(shape) < 0.004, iterations=2)


def main() -> None:
    rng = np.random.default_rng(2026)
    pairs = []
    for shape in ((9, 18, 17), (9, 18, 17), (6, 20, 14), (12, 10, 10)):
        ref, pred = blobs(rng, shape), blobs(rng, shape)
        pairs.append({
            "shape": list(shape), "ref": np.argwhere(ref).tolist(), "pred": np.argwhere(pred).tolist(),
            # the authors call hd95(pred, gt); medpy's value does not depend on the order
            "hd95_vox": float(hd95(pred, ref)), "hd95_mm": float(hd95(pred, ref, voxelspacing=SPACING)),
        })
    out = Path(__file__).resolve().parent / "medpy_hd95_reference.json"
    out.write_text(json.dumps({"medpy": getattr(medpy, "__version__", "0.5.2"), "spacing": SPACING, "pairs": pairs}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
