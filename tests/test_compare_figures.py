"""The comparison's verdict, terminal table, learning curves and montage, on small hand-made inputs."""
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from compare_helpers import fake_logging
from nnunetv2_unetrpp.compare import learning_curves, montage, training_log
from nnunetv2_unetrpp.compare.labels import LabelSpec, Target
from nnunetv2_unetrpp.compare.report import build_summary, cost_line, dice_table
from nnunetv2_unetrpp.compare.verdict import minimum_p, verdict

LABELS = LabelSpec((Target("1", "liver", (1,)), Target("2", "spleen", (2,)), Target("3", "vessel", (3,))), None,
                   frozenset({0, 1, 2, 3}))


def png_pixels(path: Path) -> np.ndarray:
    """(height, width, channels) pixels of a PNG."""
    return matplotlib.image.imread(str(path))


def colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


def summary_of(dice: dict[str, list[list[float]]], cost: dict | None = None) -> dict:
    """Summary of methods given as name -> per-case [liver, spleen, vessel] Dice (other metrics copy Dice)."""
    cases = [f"case_{i}" for i in range(len(next(iter(dice.values()))))]
    results = [{m: {k: {"dice": v[i][j], "hd95_mm": 1 - v[i][j], "hd95_vox": 1 - v[i][j], "nsd": v[i][j]}
                    for j, k in enumerate(("1", "2", "3"))} for m, v in dice.items()} for i in range(len(cases))]
    info = {m: {"cost": c} for m, c in (cost or {}).items()}
    return build_summary(cases, list(dice), results, LABELS, {}, info, [])


def test_verdict_names_the_winner_per_structure_and_the_test():
    a = [[0.9, 0.8, 0.7]] * 3 + [[0.92, 0.81, 0.7]] * 3
    b = [[0.9, 0.6, 0.75]] * 3 + [[0.91, 0.62, 0.76]] * 3
    text = verdict(summary_of({"A": a, "B": b}))
    assert text.startswith("A has the higher mean Dice (0.805 vs 0.757 for B; paired Wilcoxon test over 6 cases "
                           "significant, p = 0.0312); ")
    assert "B is ahead on vessel; A is ahead on spleen; they are on par (within 0.01) on liver." in text


def test_verdict_says_when_too_few_cases_can_be_significant():
    summary = summary_of({"A": [[0.9, 0.9, 0.9], [0.8, 0.8, 0.8]], "B": [[0.5, 0.5, 0.5], [0.4, 0.4, 0.4]]})
    assert ("(0.850 vs 0.450 for B; paired Wilcoxon test over 2 cases not significant, p = 0.5: with 2 cases no "
            "difference can reach p < 0.05); A is ahead on liver, spleen and vessel.") in verdict(summary)
    assert minimum_p(2) == 0.5 and minimum_p(6) == pytest.approx(0.03125)


def test_verdict_compares_training_and_prediction_time():
    cost = {"A": {"training_seconds": 600.0, "inference_seconds_per_patch": 0.1, "inference_device": "cpu"},
            "B": {"training_seconds": 300.0, "inference_seconds_per_patch": 0.4, "inference_device": "cpu"}}
    summary = summary_of({"A": [[0.9, 0.9, 0.9]] * 2, "B": [[0.8, 0.8, 0.8]] * 2}, cost)
    assert ("B trained 2.0x faster than A (5.0 vs 10.0 min) and predicted 4.0x slower than A (0.40 vs 0.10 s per "
            "patch on cpu).") in verdict(summary)
    assert cost_line(summary) == "Cost: A trained 10.0 min, 0.10 s/patch; B trained 5.0 min, 0.40 s/patch"
    cost["B"]["training_seconds"] = 590.0
    assert "B trained about as fast as A (9.8 vs 10.0 min)" in verdict(summary_of({"A": [[0.9] * 3] * 2,
                                                                                  "B": [[0.8] * 3] * 2}, cost))


def test_dice_table_fits_the_width_and_turns_when_it_must():
    summary = summary_of({"UNETRPP": [[0.9, 0.8, 0.7]] * 2, "nnUNet": [[0.8, 0.6, 0.75]] * 2})
    wide = dice_table(summary).splitlines()
    assert wide[0].split() == ["liver", "spleen", "vessel", "Mean"]
    assert wide[1].split() == ["UNETRPP", "0.900", "0.800", "0.700", "0.800"]
    narrow = dice_table(summary, width=30).splitlines()
    assert narrow[0].split() == ["Dice", "UNETRPP", "nnUNet"] and narrow[2].split() == ["spleen", "0.800", "0.600"]
    assert max(map(len, narrow)) <= 30


def test_learning_curves_from_checkpoint_logging(tmp_path, monkeypatch):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    torch.save({"logging": fake_logging([30.0] * 5)}, fold / "checkpoint_final.pth")
    record = training_log.load_record(fold)
    unfinished = fake_logging([10.0] * 4)
    unfinished["train_losses"].append(-1.0)  # an epoch that started but has no validation yet
    unfinished["epoch_start_timestamps"].append(unfinished["epoch_end_timestamps"][-1])
    figures = []
    monkeypatch.setattr(learning_curves.plt, "close", figures.append)  # keep the figure to read its lines
    out = learning_curves.plot_learning_curves({"A": record, "B": training_log.record_from_logging(unfinished)},
                                               tmp_path / "curves.png")
    assert png_pixels(out).shape[:2] == (700, 1000)
    loss_by_epoch, dice_by_epoch, loss_by_time, _ = figures[0].axes

    def line(ax, label):
        return next((l.get_xdata(), l.get_ydata()) for l in ax.lines if l.get_label() == label)

    x, y = line(loss_by_epoch, "A training")
    np.testing.assert_allclose(x, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(y, np.linspace(0, -0.8, 5))
    np.testing.assert_allclose(line(loss_by_epoch, "A validation")[1], np.linspace(0, -0.7, 5))
    np.testing.assert_allclose(line(dice_by_epoch, "A")[1], np.linspace(0.1, 0.9, 5))  # per epoch, not the EMA
    np.testing.assert_allclose(line(loss_by_epoch, "B training")[0], [1, 2, 3, 4])  # the unfinished epoch is left out
    np.testing.assert_allclose(line(loss_by_time, "A training")[0], [0.5, 1.0, 1.5, 2.0, 2.5])  # minutes at epoch ends


def test_learning_curves_figure_warns_about_a_fold_without_logging(tmp_path):
    fold = tmp_path / "model" / "fold_0"
    fold.mkdir(parents=True)
    torch.save({"network_weights": {}}, fold / "checkpoint_final.pth")
    warnings = []
    assert learning_curves.learning_curves_figure({"A": (fold.parent, ("fold_0",))}, tmp_path, warnings) is None
    assert len(warnings) == 1 and "no 'logging' entry" in warnings[0]


def test_representative_slice_has_the_most_labels():
    reference = np.zeros((6, 10, 10), np.uint8)
    reference[1, 2:8, 2:8] = 1  # the largest liver, but alone
    reference[4, 2:4, 2:4] = 1
    reference[4, 6:8, 6:8] = 2
    assert montage.representative_slice(reference, LABELS, axis=0) == 4
    assert montage.representative_slice(np.moveaxis(reference, 0, 2), LABELS, axis=2) == 4


def test_montage_png_size_and_colours(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (8, 24, 24)).astype(np.float32)
    reference = np.zeros(image.shape, np.uint8)
    reference[2:6, 4:12, 4:12] = 1
    reference[2:6, 14:20, 14:20] = 2
    reference[:, 11:13, 11:13] = 3
    predicted = np.roll(reference, 2, axis=2)
    panels = {f"case_{i}": montage.montage_panels(image, [reference, predicted, reference], LABELS, (3.0, 0.8, 0.8))
              for i in range(2)}
    slice_image, slices, aspect = panels["case_0"]
    assert slice_image.shape == (24, 24) and len(slices) == 3 and aspect == 1.0
    out = montage.plot_montage(panels, ["reference", "A", "B"], LABELS, tmp_path / "montage.png")
    pixels = png_pixels(out)
    dpi = montage.DPI
    assert pixels.shape[:2] == (round((2 * montage.PANEL_INCHES + montage.LEGEND_INCHES) * dpi),
                                round(3 * montage.PANEL_INCHES * dpi))
    red, green = pixels[..., 0], pixels[..., 1]
    assert colours(pixels) > 50 and np.any(np.abs(red - green) > 0.3)  # coloured outlines, not only grey
