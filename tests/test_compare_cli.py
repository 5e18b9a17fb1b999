"""The compare CLI end to end on tiny generated NIfTI cases, and every user error it reports."""
import json
import re
import shutil
import statistics
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from compare_helpers import box, folder_snapshot, make_model_folder, tiny_dataset_json, write_seg
from conftest import write_image_file
from nnunetv2_unetrpp.compare.cli import main
from nnunetv2_unetrpp.compare.errors import CompareError
from nnunetv2_unetrpp.compare.evaluate import run_parallel
from nnunetv2_unetrpp.compare.inputs import parse_method_argument
from nnunetv2_unetrpp.compare.metrics import mask_metrics

SHAPE, SPACING = (10, 20, 20), (3.0, 0.8, 0.8)
LABELS = {"background": 0, "liver": 1, "tumour": 2}
CASES = ["case_000", "case_001", "case_002", "case_003"]


def reference(i: int) -> np.ndarray:
    seg = box(SHAPE, (2, 3, 3), (8, 12, 13), 1)
    if i != 3:  # case_003 has no tumour
        seg[3:6, 13:17, 12:16] = 2
    return seg


def prediction(i: int, shift: int, drop_tumour: bool) -> np.ndarray:
    seg = np.roll(reference(i), shift + i % 2, axis=2)
    if drop_tumour:
        seg[seg == 2] = 0
    return seg


def make_dataset(root: Path) -> dict:
    """Reference folder, a plain prediction folder (UNETR++) and a second one, plus dataset.json."""
    paths = {"ref": root / "labelsTr", "a": root / "unetrpp", "b": root / "nnunet", "dj": root / "dataset.json"}
    for i, c in enumerate(CASES):
        write_seg(paths["ref"] / f"{c}.nii.gz", reference(i), SPACING)
        write_seg(paths["a"] / f"{c}.nii.gz", prediction(i, 1, drop_tumour=i == 1), SPACING)
        write_seg(paths["b"] / f"{c}.nii.gz", prediction(i, 0, drop_tumour=False), SPACING)
    paths["dj"].write_text(json.dumps(tiny_dataset_json(LABELS)))
    return paths


def expected_metrics(ref: np.ndarray, pred: np.ndarray, values, tol: float = 1.0) -> dict:
    return mask_metrics(np.isin(ref, values), np.isin(pred, values), SPACING, tol)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunetv2_unetrpp.compare.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=Path(__file__).parent)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_end_to_end_with_model_folder(tmp_path):
    paths = make_dataset(tmp_path)
    # nnU-Net method given as a trained model folder whose two folds' validation folders hold the cases
    model, network = make_model_folder(tmp_path / "results", LABELS, [20.0, 22.0], folds=(0, 1))
    for f, cases in (("fold_0", CASES[:2]), ("fold_1", CASES[2:])):
        validation = model / f / "validation"
        validation.mkdir()
        for c in cases:
            shutil.copy(paths["b"] / f"{c}.nii.gz", validation)
        (validation / "summary.json").write_text("{}")
    inputs = [paths["ref"], paths["a"], model]
    before = [folder_snapshot(f) for f in inputs]
    out = tmp_path / "out"

    proc = run_cli("-ref", paths["ref"], "-pred", f"UNETRPP={paths['a']}", f"nnUNet={model}", "-o", out,
                   "-dataset_json", paths["dj"], "-np", "2")
    assert proc.returncode == 0, proc.stderr
    assert [folder_snapshot(f) for f in inputs] == before

    s = json.loads((out / "summary.json").read_text())
    assert list(s["methods"]) == ["UNETRPP", "nnUNet"] and s["cases"] == CASES
    assert s["settings"]["nsd_tolerance_mm"] == 1.0
    root = Path(__file__).resolve().parents[1]  # the report points at files that hold the definitions
    cited = re.findall(r"[\w/]+\.(?:py|md)", s["settings"]["metric_definitions"])
    assert cited and all((root / path).is_file() for path in cited), cited
    for name, shift, drop in (("UNETRPP", 1, True), ("nnUNet", 0, False)):
        for i, c in enumerate(CASES):
            for key, value in (("1", 1), ("2", 2)):
                expected = expected_metrics(reference(i), prediction(i, shift, drop and i == 1), [value])
                assert s["methods"][name]["per_case"][c][key] == pytest.approx(expected, rel=1e-6)
    diagonal = np.sqrt(sum((n * sp) ** 2 for n, sp in zip(SHAPE, SPACING)))
    assert s["methods"]["UNETRPP"]["per_case"]["case_001"]["2"]["hd95_mm"] == pytest.approx(diagonal)
    assert s["methods"]["UNETRPP"]["per_case"]["case_003"]["2"] == {"dice": 1.0, "hd95_mm": 0.0, "hd95_vox": 0.0,
                                                                      "nsd": 1.0}
    for name in s["methods"]:
        for key in ("1", "2"):
            for metric in ("dice", "hd95_mm", "hd95_vox", "nsd"):
                values = [s["methods"][name]["per_case"][c][key][metric] for c in CASES]
                stats = s["methods"][name]["per_label"][key][metric]
                assert stats["mean"] == pytest.approx(statistics.mean(values))
                assert stats["std"] == pytest.approx(statistics.stdev(values))
                assert stats["median"] == pytest.approx(statistics.median(values))
        assert s["methods"][name]["mean"]["dice"] == pytest.approx(
            statistics.mean(s["methods"][name]["per_label"][k]["dice"]["mean"] for k in ("1", "2")))
    pairs = [[s["methods"][n]["per_case"][c]["1"]["hd95_mm"] for c in CASES] for n in ("nnUNet", "UNETRPP")]
    test = s["wilcoxon"]["nnUNet"]["1"]["hd95_mm"]
    assert test["p"] == pytest.approx(wilcoxon(*pairs).pvalue) and test["n"] == 4
    assert "UNETRPP" not in s["wilcoxon"]

    cost = s["methods"]["nnUNet"]["cost"]
    assert cost["parameters"] == sum(p.numel() for p in network.parameters())
    assert cost["flops_per_patch"] > 0
    assert cost["epoch_seconds_mean"] == pytest.approx(21.0) and cost["epochs_logged"] == 4
    assert "cost" not in s["methods"]["UNETRPP"]

    md = (out / "summary.md").read_text()
    assert "| Method | liver Dice | liver HD95 (mm) | liver NSD | tumour Dice | tumour HD95 (mm) | tumour NSD |" in md
    nn_dice = s["methods"]["nnUNet"]["per_label"]["1"]["dice"]
    assert f"**{nn_dice['mean']:.4f} ± {nn_dice['std']:.4f}**" in md  # nnUNet's liver is the better one
    assert "Wilcoxon" in md and "## Model cost" in md and "HD95 in voxels" in md
    for png in ("dice_boxplot.png", "hd95_mm_boxplot.png"):
        width, height = png_size(out / png)
        assert width > 100 and height > 100 and (out / png).stat().st_size < 200_000


def write_images(folder: Path) -> Path:
    """A noisy image CASE_0000.nii.gz per case, brighter inside the reference's structures."""
    rng = np.random.default_rng(0)
    for i, c in enumerate(CASES):
        image = reference(i) * 100.0 + rng.normal(0, 20, SHAPE)
        write_image_file(image.astype(np.float32), folder / f"{c}_0000.nii.gz", SPACING)
    return folder


def test_model_folders_and_images_give_verdict_curves_and_montage(tmp_path):
    """-models adds cost and learning curves to plain prediction folders, -images the montage; the report opens
    with the verdict."""
    import matplotlib.image
    import torch

    paths = make_dataset(tmp_path)
    model, _ = make_model_folder(tmp_path / "results", LABELS, [20.0, 22.0])
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    start = 1_700_000_000.0
    torch.save({**torch.load(checkpoint, weights_only=False), "logging": {
        "train_losses": [0.5, 0.1], "val_losses": [0.6, 0.2], "mean_fg_dice": [0.3, 0.7], "ema_fg_dice": [0.3, 0.34],
        "dice_per_class_or_region": [[0.3], [0.7]], "lrs": [0.01, 0.005],
        "epoch_start_timestamps": [start, start + 20], "epoch_end_timestamps": [start + 20, start + 42]}}, checkpoint)
    images = write_images(tmp_path / "imagesTs")
    out = tmp_path / "out"
    assert main(["-ref", str(paths["ref"]), "-pred", f"UNETRPP={paths['a']}", f"nnUNet={paths['b']}",
                 "-models", f"nnUNet={model / 'fold_0'}", "-images", str(images), "-o", str(out),
                 "-dataset_json", str(paths["dj"]), "-np", "1"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["methods"]["nnUNet"]["cost"]["training_seconds"] == pytest.approx(42.0)
    assert s["figures"] == ["dice_boxplot.png", "hd95_mm_boxplot.png", "learning_curves.png", "montage.png"]
    md = (out / "summary.md").read_text()
    assert md.splitlines()[2].startswith("**Verdict.** nnUNet has the higher mean Dice")
    assert "tumour" in md.splitlines()[2] and "Wilcoxon test over 4 cases not significant" in md
    assert "![Learning curves](learning_curves.png)" in md and "![Representative slices](montage.png)" in md
    for png, size in (("learning_curves.png", (700, 1000)), ("montage.png", (1050, 750))):
        pixels = matplotlib.image.imread(str(out / png))
        assert pixels.shape[:2] == size and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10


def test_labels_from_references_and_nsd_tolerance(tmp_path, capsys):
    paths = make_dataset(tmp_path)
    out = tmp_path / "out"
    assert main(["-ref", str(paths["ref"]), "-pred", f"A={paths['a']}", f"B={paths['b']}", "-o", str(out),
                 "-np", "1", "--nsd_tolerance_mm", "2.0"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert list(s["labels"]) == ["1", "2"] and s["settings"]["nsd_tolerance_mm"] == 2.0
    expected = expected_metrics(reference(0), prediction(0, 1, False), [2], tol=2.0)
    assert s["methods"]["A"]["per_case"]["case_000"]["2"] == pytest.approx(expected, rel=1e-6)


def test_regions_and_ignore_label(tmp_path):
    labels = {"background": 0, "whole": [1, 2], "core": [2], "ignore": 3}
    ref = box(SHAPE, (2, 3, 3), (8, 12, 13), 1)
    ref[3:6, 5:9, 5:9] = 2
    ref[:, :, 15:] = 3  # an ignored strip
    pred = np.roll(np.where(ref == 3, 0, ref), 1, axis=1)
    pred[:, 2:8, 15:19] = 1  # predicted inside the ignored strip: must not count
    write_seg(tmp_path / "ref" / "c.nii.gz", ref, SPACING)
    write_seg(tmp_path / "pred" / "c.nii.gz", pred, SPACING)
    (tmp_path / "dataset.json").write_text(json.dumps(tiny_dataset_json(labels)))
    assert main(["-ref", str(tmp_path / "ref"), "-pred", f"M={tmp_path / 'pred'}", "-o", str(tmp_path / "out"),
                 "-dataset_json", str(tmp_path / "dataset.json"), "-np", "1"]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(s["labels"]) == ["whole", "core"] and s["settings"]["ignore_label"] == 3
    keep = ref != 3
    for key, values in (("whole", [1, 2]), ("core", [2])):
        expected = mask_metrics(np.isin(ref, values) & keep, np.isin(pred, values) & keep, SPACING, 1.0)
        assert s["methods"]["M"]["per_case"]["c"][key] == pytest.approx(expected, rel=1e-6)


def test_subset_and_allow_extra(tmp_path):
    paths = make_dataset(tmp_path)
    for c in CASES[2:]:
        (paths["a"] / f"{c}.nii.gz").unlink()
        (paths["b"] / f"{c}.nii.gz").unlink()
    write_seg(paths["a"] / "case_999.nii.gz", reference(0), SPACING)
    write_seg(paths["b"] / "case_999.nii.gz", reference(0), SPACING)
    argv = ["-ref", str(paths["ref"]), "-pred", f"A={paths['a']}", f"B={paths['b']}", "-o", str(tmp_path / "out"),
            "-dataset_json", str(paths["dj"]), "-np", "1", "--subset", "--allow_extra"]
    assert main(argv) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["cases"] == CASES[:2]
    assert any("case_999" in w for w in s["warnings"])
    assert "## Warnings" in (tmp_path / "out" / "summary.md").read_text()
    (paths["b"] / "case_001.nii.gz").unlink()  # with --subset, every method still needs the first method's cases
    assert main(argv) == 2


def test_cost_failure_is_a_warning(tmp_path, capsys):
    paths = make_dataset(tmp_path)
    model, _ = make_model_folder(tmp_path / "results", LABELS, [5.0])
    (model / "fold_0" / "checkpoint_final.pth").write_text("not a checkpoint")
    shutil.copytree(paths["b"], model / "fold_0" / "validation")
    assert main(["-ref", str(paths["ref"]), "-pred", f"M={model / 'fold_0'}", "-o", str(tmp_path / "out"),
                 "-np", "1"]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "cost" not in s["methods"]["M"] and s["methods"]["M"]["model_folder"] == str(model)
    assert any("model cost of M" in w for w in s["warnings"]) and "warning: model cost of M" in capsys.readouterr().err
    assert any(w.startswith(f"learning curves of M ({model}) not drawn") for w in s["warnings"])
    assert "learning_curves.png" not in s["figures"] and not (tmp_path / "out" / "learning_curves.png").exists()


def test_2d_images_are_evaluated_in_2d(tmp_path, write_image):
    ref, pred = np.zeros((1, 30, 40), np.uint8), np.zeros((1, 30, 40), np.uint8)
    ref[0, 5:20, 5:25], pred[0, 7:22, 5:28] = 1, 1
    for folder, seg in (("ref", ref), ("pred", pred)):
        write_image(seg[0], tmp_path / folder / "c.nii.gz", spacing_zyx=(1.3, 0.7))  # a genuinely 2D NIfTI
    assert main(["-ref", str(tmp_path / "ref"), "-pred", f"M={tmp_path / 'pred'}", "-o", str(tmp_path / "out"),
                 "-np", "1"]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected = mask_metrics(ref[0] == 1, pred[0] == 1, (1.3, 0.7), 1.0)
    assert s["methods"]["M"]["per_case"]["c"]["1"] == pytest.approx(expected, rel=1e-6)


def _break_missing(p):
    (p["a"] / "case_002.nii.gz").unlink()
    return ["case_002", str(p["a"])]


def _break_extra(p):
    write_seg(p["a"] / "case_999.nii.gz", reference(0), SPACING)
    return [str(p["a"] / "case_999.nii.gz")]


def _break_size(p):
    write_seg(p["a"] / "case_000.nii.gz", np.zeros((10, 20, 21)), SPACING)
    return [str(p["a"] / "case_000.nii.gz"), str(p["ref"] / "case_000.nii.gz"), "(10, 20, 21)", "(10, 20, 20)"]


def _break_spacing(p):
    write_seg(p["b"] / "case_001.nii.gz", reference(1), (2.5, 0.8, 0.8))
    return [str(p["b"] / "case_001.nii.gz"), str(p["ref"] / "case_001.nii.gz"), "2.5", "3.0"]


def _break_labels(p):
    write_seg(p["a"] / "case_000.nii.gz", reference(0) * 3, SPACING)
    return [str(p["a"] / "case_000.nii.gz"), "[3, 6]"]


def _break_no_images(p):
    for f in p["b"].iterdir():
        f.rename(f.with_suffix(".txt"))
    return [str(p["b"]), "no .nii.gz images"]


def _add_images(p):
    p["img"] = write_images(p["ref"].parent / "imagesTs")
    return ["inside input folder", str(p["img"])]


ERRORS = {
    "missing case": (_break_missing, {}),
    "extra case": (_break_extra, {}),
    "size mismatch": (_break_size, {}),
    "spacing mismatch": (_break_spacing, {}),
    "unknown labels": (_break_labels, {}),
    "no images": (_break_no_images, {}),
    "missing pred folder": (lambda p: ["does not exist", str(p["a"]) + "_nope"], {"a": "_nope"}),
    "missing ref folder": (lambda p: ["does not exist", str(p["ref"]) + "_nope"], {"ref": "_nope"}),
    "malformed argument": (lambda p: ["malformed", "NAME=DIR"], {"malformed": True}),
    "output is input": (lambda p: ["output folder", str(p["b"])], {"out": "b"}),
    "output inside input": (lambda p: ["output folder", "inside input folder"], {"out": "labelsTr/sub"}),
    "duplicate names": (lambda p: ["unique"], {"duplicate": True}),
    "missing dataset.json": (lambda p: ["does not exist", str(p["dj"]) + "_nope"], {"dj": "_nope"}),
    "models of an unknown method": (lambda p: ["no -pred method is called Other"], {"models": "Other=a"}),
    "models not a model folder": (lambda p: ["is not a trained nnU-Net model folder"], {"models": "nnUNet=a"}),
    "images missing": (lambda p: ["image(s) missing", "case_000_0000.nii.gz"], {"images": "ref"}),
    "output inside images": (_add_images, {"images": "img", "out": "imagesTs/sub"}),
}


def _argv(p: dict, tmp_path: Path, opts: dict) -> list[str]:
    a = str(p["a"]) + opts.get("a", "")
    ref = str(p["ref"]) + opts.get("ref", "")
    preds = [f"UNETRPP={a}", f"{'UNETRPP' if opts.get('duplicate') else 'nnUNet'}={p['b']}"]
    if opts.get("malformed"):
        preds[1] = str(p["b"])
    out = str(tmp_path / opts["out"]) if "out" in opts else str(tmp_path / "out")
    if opts.get("out") == "b":
        out = str(p["b"])
    extra = []
    if "models" in opts:
        name, key = opts["models"].split("=")
        extra += ["-models", f"{name}={p[key]}"]
    if "images" in opts:
        extra += ["-images", str(p[opts["images"]])]
    return ["-ref", ref, "-pred", *preds, "-o", out, "-dataset_json", str(p["dj"]) + opts.get("dj", ""), "-np", "1",
            *extra]


@pytest.mark.parametrize("error", list(ERRORS))
def test_user_errors(tmp_path, capsys, error):
    paths = make_dataset(tmp_path)
    break_inputs, opts = ERRORS[error]
    expected = break_inputs(paths)
    before = {k: folder_snapshot(paths[k]) for k in ("ref", "a", "b")}
    assert main(_argv(paths, tmp_path, opts)) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)
    assert {k: folder_snapshot(paths[k]) for k in ("ref", "a", "b")} == before
    assert not (tmp_path / "out").exists() and not (paths["ref"] / "sub").exists()


def test_worker_errors_reach_the_main_process():
    """A CompareError raised in a 'spawn' worker comes back as itself, with its message."""
    assert run_parallel(parse_method_argument, ["A=x", "B=y"], 2, "test") == [("A", Path("x")), ("B", Path("y"))]
    with pytest.raises(CompareError, match="malformed -pred argument 'bad'"):
        run_parallel(parse_method_argument, ["A=x", "bad"], 2, "test")


def test_a_dying_worker_is_an_error_not_a_wait():
    """A worker killed mid-task (here it exits at once, as after SIGKILL from the out-of-memory killer) ends
    the run with a one-line error; multiprocessing.Pool would wait for its task forever."""
    import os

    with pytest.raises(CompareError, match="a worker process died"):
        run_parallel(os._exit, [3, 3], 2, "evaluating")


@pytest.mark.parametrize("error", ["malformed argument", "missing case"])
def test_user_errors_in_a_subprocess(tmp_path, error):
    """The real command: exit code 2, the message, and no traceback."""
    paths = make_dataset(tmp_path)
    break_inputs, opts = ERRORS[error]
    expected = break_inputs(paths)
    proc = run_cli(*_argv(paths, tmp_path, opts))
    assert proc.returncode == 2
    assert "error: " in proc.stderr and "Traceback" not in proc.stderr
    assert all(text in proc.stderr for text in expected), proc.stderr


def test_model_checkpoint_that_would_run_code_is_not_loaded(tmp_path):
    """-models folder whose checkpoint pickle would run code (CreatesFile): nnU-Net's predictor never sees it,
    the metrics complete, the cost and the learning curves are skipped with the reason."""
    import torch

    from conftest import CreatesFile

    paths = make_dataset(tmp_path)
    model, _ = make_model_folder(tmp_path / "results", LABELS, [20.0, 22.0])
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    ran = tmp_path / "ran"
    torch.save({**torch.load(checkpoint, weights_only=False), "payload": CreatesFile(ran)}, checkpoint)
    out = tmp_path / "out"
    proc = run_cli("-ref", paths["ref"], "-pred", f"A={paths['a']}", f"nnUNet={paths['b']}", "-models",
                   f"nnUNet={model}", "-o", out, "-dataset_json", paths["dj"], "-np", "1")
    assert proc.returncode == 0, proc.stderr
    assert not ran.exists()
    s = json.loads((out / "summary.json").read_text())
    assert "cost" not in s["methods"]["nnUNet"] and len(s["methods"]["nnUNet"]["per_case"]) == len(CASES)
    assert re.search(r"warning: model cost of nnUNet .* not computed: UnsafePickleError: .*'io.open'",
                     proc.stderr), proc.stderr
    # --trust_pickles is the user's word that the file is theirs: it is loaded as it is, and the cost computed
    proc = run_cli("-ref", paths["ref"], "-pred", f"A={paths['a']}", f"nnUNet={paths['b']}", "-models",
                   f"nnUNet={model}", "-o", out, "-dataset_json", paths["dj"], "-np", "1", "--overwrite",
                   "--trust_pickles")
    assert proc.returncode == 0, proc.stderr
    assert ran.exists() and "cost" in json.loads((out / "summary.json").read_text())["methods"]["nnUNet"]


def test_output_folder_is_replaced_only_if_compare_wrote_it(tmp_path, capsys):
    paths = make_dataset(tmp_path)
    out = tmp_path / "out"
    args = ["-ref", str(paths["ref"]), "-pred", f"A={paths['a']}", f"B={paths['b']}", "-o", str(out), "-np", "1"]
    assert main(args) == 0
    (out / "old.txt").write_text("from the earlier comparison")
    assert main(args) == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0 and not (out / "old.txt").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.json").write_text("my own numbers")
    assert main([*args[:-4], "-o", str(mine), "-np", "1", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "was not written by nnUNetv2_unetrpp_compare" in err and err.count("\n") == 1
    assert [p.name for p in mine.iterdir()] == ["summary.json"] and (mine / "summary.json").read_text() == "my own numbers"
