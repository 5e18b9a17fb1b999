"""``--protocol``: the UNETR++ paper's structures, its HD95 (medpy's pooled percentile, 0 for an empty mask) and its
published numbers, against hand-computed values on anisotropic fixtures with empty masks."""
import json
from math import sqrt
from pathlib import Path

import numpy as np
import pytest

from compare_helpers import write_seg
from nnunetv2_unetrpp.compare.cli import main
from nnunetv2_unetrpp.compare.metrics import image_diagonal, mask_metrics, paper_hd95
from nnunetv2_unetrpp.compare.protocols import PROTOCOLS
from test_compare_metrics import directed_distances, random_blobs

SPACING = (2.0, 1.0, 0.5)  # z, y, x in mm


def line_fixture():
    """Reference: a line of 10 voxels along x at z=0. Prediction: the same line plus 3 stray voxels at z=3,
    x=17..19. Every voxel is a surface voxel (the masks are one voxel thick)."""
    ref = np.zeros((4, 3, 20), bool)
    ref[0, 1, 0:10] = True
    pred = ref.copy()
    pred[3, 1, 17:20] = True
    return ref, pred


def test_paper_hd95_pools_both_directions_hand_computed():
    ref, pred = line_fixture()
    # distance of the stray voxel at x to the nearest reference voxel (z=0, x=9): dz = 3 voxels, dx = x - 9
    vox = [sqrt(3 ** 2 + (x - 9) ** 2) for x in (17, 18, 19)]
    mm = [sqrt((3 * 2.0) ** 2 + ((x - 9) * 0.5) ** 2) for x in (17, 18, 19)]
    # pooled: 10 + 10 zeros and the 3 stray distances = 23 values; numpy's 95th percentile sits at rank 0.95 * 22
    # = 20.9, between the 21st (vox[0]) and 22nd (vox[1]) sorted value
    pooled = lambda d: d[0] + 0.9 * (d[1] - d[0])  # noqa: E731
    # MONAI's (and hd95_vox's) HD95: pred -> ref alone (10 zeros, 3 distances), rank 0.95 * 12 = 11.4
    directed = lambda d: d[1] + 0.4 * (d[2] - d[1])  # noqa: E731
    m = mask_metrics(ref, pred, SPACING, 1.0, paper_rules=True)
    assert m["hd95_paper_vox"] == pytest.approx(pooled(vox), rel=1e-6)
    assert m["hd95_paper_mm"] == pytest.approx(pooled(mm), rel=1e-6)
    assert m["hd95_vox"] == pytest.approx(directed(vox), rel=1e-6)
    assert m["hd95_mm"] == pytest.approx(directed(mm), rel=1e-6)
    assert m["dice"] == pytest.approx(2 * 10 / 23)


@pytest.mark.parametrize("seed", range(3))
def test_paper_hd95_matches_pooled_brute_force(seed):
    rng = np.random.default_rng(seed)
    ref, pred = random_blobs(rng, (9, 18, 17)), random_blobs(rng, (9, 18, 17))
    for spacing in (SPACING, (1.0, 1.0, 1.0)):
        d_pr, d_rp = directed_distances(pred, ref, spacing)
        assert paper_hd95(ref, pred, spacing) == pytest.approx(np.percentile(np.concatenate([d_pr, d_rp]), 95),
                                                               rel=1e-5)


def test_paper_hd95_matches_medpy():
    """medpy's own hd95 values (tests/data/make_medpy_hd95_reference.py), in voxels and with anisotropic spacing;
    MONAI's HD95 (hd95_vox, hd95_mm) differs on every pair."""
    reference = json.loads((Path(__file__).parent / "data" / "medpy_hd95_reference.json").read_text())
    for pair in reference["pairs"]:
        ref, pred = (np.zeros(pair["shape"], bool) for _ in range(2))
        ref[tuple(np.array(pair["ref"]).T)] = True
        pred[tuple(np.array(pair["pred"]).T)] = True
        m = mask_metrics(ref, pred, reference["spacing"], 1.0, paper_rules=True)
        assert m["hd95_paper_vox"] == pytest.approx(pair["hd95_vox"], rel=1e-6)
        assert m["hd95_paper_mm"] == pytest.approx(pair["hd95_mm"], rel=1e-6)
        assert m["hd95_vox"] > pair["hd95_vox"] * 1.002 and m["hd95_mm"] > pair["hd95_mm"] * 1.002


def test_empty_masks_follow_the_authors_rules():
    ref, pred = line_fixture()
    empty = np.zeros_like(ref)
    for a, b in ((ref, empty), (empty, pred)):  # exactly one empty: Dice 0, the paper's HD95 0
        m = mask_metrics(a, b, SPACING, 1.0, paper_rules=True)
        assert (m["dice"], m["hd95_paper_vox"], m["hd95_paper_mm"]) == (0.0, 0.0, 0.0)
        assert m["hd95_mm"] == pytest.approx(image_diagonal(ref.shape, SPACING))  # the standard rule is unchanged
    m = mask_metrics(empty, empty, SPACING, 1.0, paper_rules=True)  # both empty: Dice 1, HD95 0
    assert (m["dice"], m["hd95_paper_vox"], m["hd95_paper_mm"]) == (1.0, 0.0, 0.0)
    assert "hd95_paper_vox" not in mask_metrics(ref, pred, SPACING, 1.0)


def test_label_sets_are_the_authors():
    synapse = PROTOCOLS["synapse"].labels
    assert [(t.name, t.values) for t in synapse.targets] == [
        ("spleen", (1,)), ("right kidney", (2,)), ("left kidney", (3,)), ("gallbladder", (4,)), ("liver", (6,)),
        ("stomach", (7,)), ("aorta", (8,)), ("pancreas", (11,))]
    assert synapse.allowed_values == frozenset(range(14))
    brats = PROTOCOLS["brats"].labels
    assert [(t.key, t.values) for t in brats.targets] == [("WT", (1, 2, 3)), ("TC", (2, 3)), ("ET", (3,))]
    assert [t.values for t in PROTOCOLS["acdc"].labels.targets] == [(1,), (2,), (3,)]
    unetrpp = {r.method: r for r in PROTOCOLS["synapse"].results}["UNETR++"]
    assert (unetrpp.mean_dice, unetrpp.mean_hd95) == (87.22, 7.53)
    assert np.mean(list(unetrpp.dice.values())) == pytest.approx(87.22, abs=0.01)


def btcv_label(shape=(8, 16, 24)) -> np.ndarray:
    """All 13 BTCV organs as boxes: organ v in x-slab [v, v+1) and rows 2..10, z 1..6."""
    seg = np.zeros(shape, np.uint8)
    for v in range(1, 14):
        seg[1:6, 2:10, v + 4:v + 5] = v
    return seg


def test_cli_synapse_protocol_scores_8_organs_and_prints_the_paper(tmp_path, capsys):
    ref_dir, pred_dir = tmp_path / "labelsTs", tmp_path / "pred"
    ref = btcv_label()
    pred = ref.copy()
    pred[pred == 4] = 0  # gallbladder missed: one empty mask
    pred[1:6, 11:13, 5] = 1  # two stray spleen rows (11, 12); the spleen is rows 2..9
    pred[pred == 7] = 0
    pred[1:6, 11:13, 11] = 7  # stomach beside the reference's: Dice 0, but no empty mask
    for case in ("img0001", "img0002"):
        write_seg(ref_dir / f"{case}.nii.gz", ref, SPACING)
        write_seg(pred_dir / f"{case}.nii.gz", pred, SPACING)
    assert main(["-ref", str(ref_dir), "-pred", f"UNETRPP={pred_dir}", "-o", str(tmp_path / "out"), "-np", "1",
                 "--protocol", "synapse"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["labels"]) == ["1", "2", "3", "4", "6", "7", "8", "11"]
    per_case = summary["methods"]["UNETRPP"]["per_case"]["img0001"]
    spleen_ref, spleen_pred = ref == 1, pred == 1
    assert per_case["1"]["hd95_paper_vox"] == pytest.approx(
        np.percentile(np.concatenate(directed_distances(spleen_pred, spleen_ref, (1, 1, 1))), 95))
    assert per_case["1"]["hd95_paper_mm"] == pytest.approx(
        np.percentile(np.concatenate(directed_distances(spleen_pred, spleen_ref, SPACING)), 95))
    assert per_case["1"]["dice"] == pytest.approx(2 * 40 / (40 + 50))
    assert (per_case["4"]["dice"], per_case["4"]["hd95_paper_vox"]) == (0.0, 0.0)
    assert per_case["7"]["dice"] == 0.0 and per_case["7"]["hd95_paper_vox"] > 0
    assert per_case["6"] == {**per_case["6"], "dice": 1.0, "hd95_paper_vox": 0.0, "hd95_paper_mm": 0.0}
    mean = summary["methods"]["UNETRPP"]["mean"]
    assert mean["dice"] == pytest.approx((2 * 40 / 90 + 0 + 0 + 5) / 8)
    out = capsys.readouterr().out
    md = (tmp_path / "out" / "summary.md").read_text()
    paper_row = "| UNETR++ (paper) | 95.77 | 87.18 | 87.54 | 71.25 | 96.42 | 86.01 | 92.52 | 81.10 | 7.53 | - | 87.22 |"
    for text in (out, md):
        assert paper_row in text
        assert f"| UNETRPP (this comparison) | {100 * 2 * 40 / 90:.2f} | 100.00 | 100.00 | 0.00 |" in text
        assert "empty mask, whose HD95 the paper's rule counts as 0: UNETRPP: 2." in text


def test_cli_brats_protocol_scores_regions(tmp_path):
    ref = np.zeros((6, 10, 10), np.uint8)
    ref[1:5, 2:8, 2:8] = 1  # edema
    ref[2:4, 3:7, 3:7] = 2  # non-enhancing
    ref[2:4, 4:6, 4:6] = 3  # enhancing
    pred = ref.copy()
    pred[pred == 3] = 2  # enhancing tumour called non-enhancing: WT and TC right, ET empty
    write_seg(tmp_path / "ref" / "BRATS_011.nii.gz", ref, SPACING)
    write_seg(tmp_path / "pred" / "BRATS_011.nii.gz", pred, SPACING)
    assert main(["-ref", str(tmp_path / "ref"), "-pred", f"A={tmp_path / 'pred'}", "-o", str(tmp_path / "out"),
                 "-np", "1", "--protocol", "brats"]) == 0
    case = json.loads((tmp_path / "out" / "summary.json").read_text())["methods"]["A"]["per_case"]["BRATS_011"]
    assert {k: v["dice"] for k, v in case.items()} == {"WT": 1.0, "TC": 1.0, "ET": 0.0}
    assert case["ET"]["hd95_paper_vox"] == 0.0


def test_protocol_rejects_values_outside_the_benchmark(tmp_path, capsys):
    write_seg(tmp_path / "ref" / "x.nii.gz", np.full((2, 3, 3), 4, np.uint8), SPACING)
    write_seg(tmp_path / "pred" / "x.nii.gz", np.zeros((2, 3, 3), np.uint8), SPACING)
    assert main(["-ref", str(tmp_path / "ref"), "-pred", f"A={tmp_path / 'pred'}", "-o", str(tmp_path / "out"),
                 "-np", "1", "--protocol", "acdc"]) == 2
    assert "contains label values [4]" in capsys.readouterr().err
