"""Synthetic abdominal-CT-like dataset in nnU-Net v2 raw format, deterministic per seed.

Each case is a thick-slice CT volume in Hounsfield units: air outside an elliptic body of soft
tissue wrapped in subcutaneous fat, an unlabelled vertebra, and five labelled structures of very
different sizes: a large deformed liver, a spleen, two kidneys and a thin contrast-filled vessel
(aorta-like) meandering along z. Shapes, positions and intensities are jittered per case, a smooth
bias field and Gaussian noise are added, and slices are thick (anisotropic spacing in the header),
so the task has the difficulties that matter when comparing segmentation networks: class
imbalance, a thin structure, anisotropy and intensity variation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: Labelled structures: label value -> name (nnU-Net's dataset.json order).
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4, "vessel": 5}

#: Mean intensity (HU) of each tissue before per-case jitter, bias field and noise. Every labelled structure
#: has its own, at least 60 HU (about four times the noise) from the next:
#: - with 40 HU between liver and spleen (and 30 HU between liver and soft tissue) the per-case jitter and
#:   bias field made them overlap, and stock nnU-Net labelled no spleen voxel after 600 iterations;
#: - with one intensity for both kidneys, only the context (liver or spleen beside it) tells them apart, as
#:   the mirroring augmentation of both methods swaps the sides: after 480-800 iterations one method or the
#:   other, depending on the seed, still called both kidneys left (right kidney Dice 0.00-0.05).
TISSUE_HU = {"air": -1000.0, "fat": -100.0, "soft_tissue": 30.0, "bone": 650.0,
             "liver": 100.0, "spleen": 160.0, "kidney_right": 230.0, "kidney_left": 310.0, "vessel": 400.0}

#: Vessel radius range in mm: thin at any resolution (a few voxels across at ~1 mm in-plane).
VESSEL_RADIUS_MM = (2.0, 2.8)


@dataclass(frozen=True)
class SyntheticConfig:
    """Geometry of the generated volumes: array shape (z, y, x) and spacing (z, y, x) in mm."""

    in_plane: int = 96
    slices: int = 32
    spacing: tuple[float, float, float] = (3.0, 0.9, 0.9)

    @classmethod
    def from_image_size(cls, in_plane: int) -> "SyntheticConfig":
        """`in_plane` x `in_plane` pixels and about a third as many 3 mm slices (a multiple of 8, at least 16)."""
        return cls(in_plane=in_plane, slices=max(16, 8 * round(in_plane / 24)))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: tuple[int, ...]) -> np.ndarray:
    """Low-frequency random field in about [-1, 1]: cubic upsampling of a coarse Gaussian grid."""
    grid = rng.standard_normal(coarse)
    field = ndimage.zoom(grid, [s / c for s, c in zip(shape, coarse)], order=3, mode="nearest")
    return field[tuple(slice(0, s) for s in shape)] / 2.0


def _ellipsoid(coords: tuple[np.ndarray, ...], centre: np.ndarray, radii: np.ndarray, angle: float,
               deformation: np.ndarray | None = None) -> np.ndarray:
    """Mask of an ellipsoid rotated by `angle` in-plane, optionally with a deformed boundary."""
    z, y, x = (c - m for c, m in zip(coords, centre))
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * x + sin * y, -sin * x + cos * y
    level = (z / radii[0]) ** 2 + (v / radii[1]) ** 2 + (u / radii[2]) ** 2
    if deformation is not None:
        level = level + deformation
    return level < 1.0


def _vessel(shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator,
            centre: np.ndarray) -> np.ndarray:
    """Thin tube along z whose centre meanders smoothly; covers nearly every slice."""
    nz, ny, nx = shape
    radius_mm = rng.uniform(*VESSEL_RADIUS_MM)
    z = np.arange(nz)
    phase, period = rng.uniform(0, 2 * np.pi, 2), rng.uniform(1.2, 2.0) * nz
    cy = centre[1] * ny + 0.03 * ny * np.sin(2 * np.pi * z / period + phase[0])
    cx = centre[2] * nx + 0.04 * nx * np.sin(2 * np.pi * z / period + phase[1])
    yy, xx = np.mgrid[:ny, :nx]
    dist2 = ((yy[None] - cy[:, None, None]) * spacing[1]) ** 2 + ((xx[None] - cx[:, None, None]) * spacing[2]) ** 2
    mask = dist2 <= radius_mm ** 2
    first, last = int(rng.integers(0, max(1, nz // 16) + 1)), nz - int(rng.integers(0, max(1, nz // 16) + 1))
    mask[:first] = False
    mask[last:] = False
    return mask


def generate_case(config: SyntheticConfig, seed: int, case_index: int, split: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image in HU as float32, label map as uint8), both (z, y, x); deterministic in all arguments."""
    rng = np.random.default_rng([seed, split, case_index])
    shape = (config.slices, config.in_plane, config.in_plane)
    coords = tuple(c.astype(np.float32) for c in
                   np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij", sparse=True))

    def jitter(value: float, amount: float) -> float:
        return value + rng.uniform(-amount, amount)

    body_radii = np.array([10.0, jitter(0.36, 0.03), jitter(0.45, 0.03)])
    body_centre = np.array([0.5, jitter(0.5, 0.02), jitter(0.5, 0.02)])
    body = _ellipsoid(coords, body_centre, body_radii, 0.0,
                      0.08 * _smooth_field(rng, shape, (2, 4, 4)))
    inner = _ellipsoid(coords, body_centre, body_radii - [0, 0.04, 0.04], 0.0)
    names = list(TISSUE_HU)
    tissue = np.where(body, names.index("soft_tissue"), names.index("air")).astype(np.uint8)
    tissue[body & ~inner] = names.index("fat")

    by, bx = body_centre[1:]
    vertebra = np.array([0.5, by + 0.22, bx])
    bone = _ellipsoid(coords, vertebra, np.array([10.0, 0.07, 0.075]), 0.0)

    def organ(centre, radii, amount=0.08, wobble=0.35):
        centre = np.array([jitter(c, amount * r) for c, r in zip(centre, radii)])
        radii = np.array(radii) * rng.uniform(0.85, 1.15, 3)
        deformation = wobble * _smooth_field(rng, shape, (3, 5, 5))
        return _ellipsoid(coords, centre, radii, rng.uniform(-0.3, 0.3), deformation)

    label = np.zeros(shape, np.uint8)
    liver = organ([0.35, by - 0.05, bx - 0.22], [0.4, 0.2, 0.18], wobble=0.5)
    liver |= organ([0.25, by - 0.15, bx - 0.06], [0.2, 0.08, 0.14])
    structures = {
        "liver": liver,
        "spleen": organ([0.3, by + 0.03, bx + 0.27], [0.22, 0.12, 0.09]),
        "kidney_right": organ([0.62, by + 0.16, bx - 0.19], [0.25, 0.11, 0.075], wobble=0.2),
        "kidney_left": organ([0.6, by + 0.16, bx + 0.19], [0.25, 0.11, 0.075], wobble=0.2),
        "vessel": _vessel(shape, config.spacing, rng, np.array([0.5, by + 0.04, bx])),
    }
    for name, mask in structures.items():  # later structures win overlaps; the vessel is painted last
        mask &= inner & ~bone
        label[mask] = LABELS[name]
        tissue[mask] = names.index(name)
    tissue[bone & inner] = names.index("bone")

    hu = np.array([value + (rng.normal(0, 8) if name != "air" else 0.0) for name, value in TISSUE_HU.items()],
                  np.float32)
    image = hu[tissue]
    image = ndimage.gaussian_filter(image, sigma=(0.4, 0.7, 0.7))  # partial-volume blur
    bias = rng.uniform(10, 30) * _smooth_field(rng, shape, (2, 3, 3))
    image += np.where(body, bias, 0.0).astype(np.float32)
    image += rng.normal(0, rng.uniform(10, 20), shape).astype(np.float32)
    return np.clip(image, -1024, 3071).astype(np.float32), label


def _write(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK orders (x, y, z)
    sitk.WriteImage(image, str(path), useCompression=True)


def dataset_json(num_training: int) -> dict:
    """nnU-Net v2 dataset.json of the synthetic dataset."""
    return {
        "name": "SyntheticAbdomenCT",
        "description": "Synthetic abdominal-CT-like volumes made by nnunetv2_unetrpp.demo (not real patients)",
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": num_training,
        "file_ending": ".nii.gz",
        "tensorImageSize": "3D",
        "licence": "CC0 (generated)",
    }


def write_dataset(folder: Path, num_train: int, num_test: int, config: SyntheticConfig, seed: int) -> None:
    """Write imagesTr/labelsTr, imagesTs with their ground truth in labelsTs, and dataset.json."""
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, count, prefix, images, labels in ((0, num_train, "train", "imagesTr", "labelsTr"),
                                                 (1, num_test, "test", "imagesTs", "labelsTs")):
        for i in range(count):
            case = f"abd{prefix}_{i:03d}"
            image, label = generate_case(config, seed, i, split)
            _write(image, config.spacing, folder / images / f"{case}_0000.nii.gz")
            _write(label, config.spacing, folder / labels / f"{case}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps(dataset_json(num_train), indent=2))
