"""Metrics against brute-force references: surface voxels by erosion XOR, all pairwise distances with numpy."""
import numpy as np
import pytest
from scipy import ndimage

from nnunetv2_unetrpp.compare.metrics import image_diagonal, mask_metrics

ANISO = (3.0, 0.8, 0.8)


def surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Physical coordinates of the surface voxels (mask minus its erosion; outside the image is background)."""
    edges = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return np.argwhere(edges) * np.asarray(spacing, float)


def directed_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    pa, pb = surface_points(a, spacing), surface_points(b, spacing)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return d.min(axis=1), d.min(axis=0)


def brute_force(ref, pred, spacing, tol):
    d_pr, d_rp = directed_distances(pred, ref, spacing)
    hd95 = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
    nsd = ((d_pr <= tol).sum() + (d_rp <= tol).sum()) / (d_pr.size + d_rp.size)
    dice = 2 * np.count_nonzero(ref & pred) / (np.count_nonzero(ref) + np.count_nonzero(pred))
    return dice, hd95, nsd


def random_blobs(rng, shape, density=0.03, iterations=2):
    return ndimage.binary_dilation(rng.random(shape) < density, iterations=iterations)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing,tol", [(ANISO, 1.0), (ANISO, 2.5), ((1.0, 1.0, 1.0), 1.0), ((0.7, 1.9, 1.2), 2.0)])
def test_random_masks_match_brute_force(seed, spacing, tol):
    rng = np.random.default_rng(seed)
    ref, pred = random_blobs(rng, (9, 18, 17)), random_blobs(rng, (9, 18, 17))
    m = mask_metrics(ref, pred, spacing, tol)
    dice, hd95, nsd = brute_force(ref, pred, spacing, tol)
    assert m["dice"] == pytest.approx(dice, rel=1e-12)
    assert m["hd95_mm"] == pytest.approx(hd95, rel=1e-5)
    assert m["nsd"] == pytest.approx(nsd, rel=1e-5)
    assert m["hd95_vox"] == pytest.approx(brute_force(ref, pred, (1, 1, 1), tol)[1], rel=1e-5)


def test_hd95_is_max_of_directed_percentiles_not_pooled():
    ref = np.zeros((8, 24, 24), bool)
    ref[2:6, 4:12, 4:12] = True
    pred = ref.copy()
    pred[3:5, 7:9, 12:18] = True  # a thin outgrowth: only prediction->reference distances grow
    d_pr, d_rp = directed_distances(pred, ref, ANISO)
    directed = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
    pooled = np.percentile(np.concatenate([d_pr, d_rp]), 95)
    assert abs(directed - pooled) > 0.1  # the two definitions really differ here
    assert mask_metrics(ref, pred, ANISO, 1.0)["hd95_mm"] == pytest.approx(directed, rel=1e-5)


def test_identical_masks_and_border_surfaces():
    ref = np.zeros((6, 10, 10), bool)
    ref[:, 0:5, 0:10] = True  # touches the image border on several faces
    m = mask_metrics(ref, ref.copy(), ANISO, 1.0)
    assert m == {"dice": 1.0, "hd95_mm": 0.0, "hd95_vox": 0.0, "nsd": 1.0}
    shifted = np.roll(ref, 2, axis=1)  # shifted by 2 voxels of 0.8 mm along y
    m = mask_metrics(ref, shifted, ANISO, 1.0)
    dice, hd95, nsd = brute_force(ref, shifted, ANISO, 1.0)
    assert (m["dice"], m["hd95_mm"], m["nsd"]) == pytest.approx((dice, hd95, nsd), rel=1e-5)
    assert 0 < m["nsd"] < 1


def test_2d_masks():
    rng = np.random.default_rng(7)
    ref, pred = random_blobs(rng, (30, 25), 0.02), random_blobs(rng, (30, 25), 0.02)
    m = mask_metrics(ref, pred, (0.5, 1.5), 1.0)
    dice, hd95, nsd = brute_force(ref, pred, (0.5, 1.5), 1.0)
    assert (m["dice"], m["hd95_mm"], m["nsd"]) == pytest.approx((dice, hd95, nsd), rel=1e-5)


def test_both_empty():
    empty = np.zeros((5, 6, 7), bool)
    assert mask_metrics(empty, empty.copy(), ANISO, 1.0) == {"dice": 1.0, "hd95_mm": 0.0, "hd95_vox": 0.0, "nsd": 1.0}


@pytest.mark.parametrize("empty_side", ["reference", "prediction"])
def test_exactly_one_empty(empty_side):
    full = np.zeros((5, 6, 7), bool)
    full[1:3, 2:4, 2:5] = True
    empty = np.zeros_like(full)
    ref, pred = (empty, full) if empty_side == "reference" else (full, empty)
    m = mask_metrics(ref, pred, ANISO, 1.0)
    assert m["dice"] == 0.0 and m["nsd"] == 0.0
    assert m["hd95_mm"] == pytest.approx(np.sqrt((5 * 3.0) ** 2 + (6 * 0.8) ** 2 + (7 * 0.8) ** 2))
    assert m["hd95_vox"] == pytest.approx(np.sqrt(25 + 36 + 49))
    assert image_diagonal((5, 6, 7), ANISO) == pytest.approx(m["hd95_mm"])


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        mask_metrics(np.zeros((3, 4, 5), bool), np.zeros((3, 4, 6), bool), ANISO, 1.0)


def test_small_structures_in_a_large_image():
    """Masks far from each other and from the image centre, one touching the border: cropping changes nothing."""
    ref = np.zeros((20, 40, 40), bool)
    ref[0:3, 0:4, 30:36] = True
    pred = np.zeros_like(ref)
    pred[1:4, 2:5, 28:35] = True
    pred[15:17, 30:33, 5:8] = True  # a false positive far away
    m = mask_metrics(ref, pred, ANISO, 1.5)
    dice, hd95, nsd = brute_force(ref, pred, ANISO, 1.5)
    assert (m["dice"], m["hd95_mm"], m["nsd"]) == pytest.approx((dice, hd95, nsd), rel=1e-5)
