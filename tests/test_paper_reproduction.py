"""README "Reproducing the paper": every command of its Synapse block, run as written on a fake BTCV download
(the real layout and case names, 30 small random volumes), with short test trainers in place of the 1000-epoch
ones and CPU settings (one process, no test-time mirroring); the substitutions are listed in SUBSTITUTIONS and
each must apply."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnunet_helpers import nnunet_env
from test_paper_datasets import AUTHORS_SYNAPSE_VAL, make_btcv_download

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
SHORT_TRAINERS = textwrap.dedent('''
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP
    from nnunetv2_unetrpp.trainers.settings import DeclaredSettings


    class ShortRun(DeclaredSettings):
        """One epoch of two iterations and no final validation: the test predicts the evaluated cases itself."""
        num_epochs, num_iterations_per_epoch, num_val_iterations_per_epoch = 1, 2, 1

        def perform_actual_validation(self, save_probabilities: bool = False):
            pass


    class nnUNetTrainerUNETRPP_papertest(ShortRun, nnUNetTrainerUNETRPP):
        """UNETR++, short."""


    class nnUNetTrainer_papertest(ShortRun, nnUNetTrainer):
        """Stock nnU-Net, short."""
''')
PREDICT_ON_CPU = "-device cpu -npp 1 -nps 1 --disable_tta"
#: (README text, what the test runs instead): the download's place, short trainers, CPU and one process
SUBSTITUTIONS = [
    ("-i BTCV ", "-i {btcv} "),
    ("--verify_dataset_integrity", "--verify_dataset_integrity -np 1 -npfp 1"),
    ("-f 0 -tr nnUNetTrainerUNETRPP -p nnUNetUNETRPPPlans\n",
     f"-f 0 -tr nnUNetTrainerUNETRPP_papertest -p nnUNetUNETRPPPlans {PREDICT_ON_CPU}\n"),
    ("-f 0 -tr nnUNetTrainer\n", f"-f 0 -tr nnUNetTrainer_papertest {PREDICT_ON_CPU}\n"),
    ("3d_fullres 0 -tr nnUNetTrainerUNETRPP -p nnUNetUNETRPPPlans\n",
     "3d_fullres 0 -tr nnUNetTrainerUNETRPP_papertest -p nnUNetUNETRPPPlans -device cpu\n"),
    ("3d_fullres 0 -tr nnUNetTrainer\n", "3d_fullres 0 -tr nnUNetTrainer_papertest -device cpu\n"),
    ("--protocol synapse", "--protocol synapse -np 1"),
]


def readme_commands() -> list[str]:
    """The command lines of the first bash block of the README section "Reproducing the paper"."""
    section = README.read_text().split("## Reproducing the paper", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_synapse_sequence_runs(tmp_path):
    btcv = make_btcv_download(tmp_path / "BTCV", shape=(12, 40, 40))
    trainers = tmp_path / "test_trainers"
    trainers.mkdir()
    (trainers / "paper_test_trainers.py").write_text(SHORT_TRAINERS)
    env = nnunet_env(tmp_path, (trainers,))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    script = "\n".join(readme_commands()) + "\n"
    for readme_text, test_text in SUBSTITUTIONS:
        assert readme_text in script, f"the README no longer has {readme_text!r}"
        script = script.replace(readme_text, test_text.format(btcv=btcv))
    commands = script.splitlines()
    assert commands[0] == 'eval "$(nnUNetv2_unetrpp_env)"' and len(commands) == 9
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1500)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    split = json.loads((tmp_path / "preprocessed" / "Dataset111_Synapse" / "splits_final.json").read_text())[0]
    assert sorted(split["val"]) == sorted(AUTHORS_SYNAPSE_VAL) and len(split["train"]) == 18
    # nnU-Net trained on exactly the 18 cases and validated on the 12
    log = next((tmp_path / "results" / "Dataset111_Synapse" / "nnUNetTrainerUNETRPP_papertest__nnUNetUNETRPPPlans__3d_fullres"
                / "fold_0").glob("training_log_*.txt")).read_text()
    assert "This split has 18 training and 12 validation cases." in log
    # UNETR++ trained the patch its planner wrote
    plans = json.loads((tmp_path / "preprocessed" / "Dataset111_Synapse" / "nnUNetUNETRPPPlans.json").read_text())
    assert f"'patch_size': {plans['configurations']['3d_fullres']['patch_size']}" in log
    summary = json.loads((tmp_path / "synapse_comparison" / "summary.json").read_text())
    assert summary["cases"] == sorted(AUTHORS_SYNAPSE_VAL)
    assert list(summary["labels"]) == ["1", "2", "3", "4", "6", "7", "8", "11"]
    assert set(summary["methods"]) == {"UNETRPP", "nnUNet"}
    assert "hd95_paper_vox" in summary["methods"]["UNETRPP"]["mean"]
    assert "| UNETR++ (paper) |" in result.stdout and "| UNETRPP (this comparison) |" in result.stdout
