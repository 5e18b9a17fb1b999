"""The demo's trainer module: UNETR++ and stock nnU-Net with one matched, configurable budget.

nnU-Net can only pick trainers by class name, so the demo writes a module with both classes, the
budget baked in, into its output folder and lists that folder in nnUNet_extTrainer. Keeping the
file in the run's folder documents exactly what was trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNETRPP_TRAINER = "nnUNetTrainerUNETRPP_demo"
NNUNET_TRAINER = "nnUNetTrainer_demo"
MODULE_NAME = "demo_trainers"

_TEMPLATE = '''"""Trainers of one nnUNetv2_unetrpp_demo run (generated file): UNETR++ and stock nnU-Net with the
same budget, declared as class attributes (nnunetv2_unetrpp.trainers.settings). nnU-Net finds them
through nnUNet_extTrainer."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP
from nnunetv2_unetrpp.trainers.settings import DeclaredSettings


class DemoBudget:
    """The demo budget; {threads} torch thread(s) per training on the CPU (nnUNetv2_train -device cpu takes every
    core, and the demo may run both trainings side by side); and no final validation, nnU-Net's
    sliding-window prediction of the validation cases, which the demo does not use (it predicts the test cases)."""

    num_epochs = {epochs}
    num_iterations_per_epoch = {iterations}
    num_val_iterations_per_epoch = {val_iterations}
    torch_threads = {threads}

    def on_train_start(self):
        if self.device.type == "cpu":
            torch.set_num_threads(self.torch_threads)
        super().on_train_start()

    def perform_actual_validation(self, save_probabilities: bool = False):
        pass


class {unetrpp}(DemoBudget, nnUNetTrainerUNETRPP):
    """UNETR++ (nnU-Net recipe) with the demo budget."""


class {nnunet}(DemoBudget, DeclaredSettings, nnUNetTrainer):
    """Stock nnU-Net with the demo budget."""
'''


@dataclass(frozen=True)
class Budget:
    """Training budget shared by both trainers, and the CPU threads each training uses."""

    epochs: int
    iterations: int
    val_iterations: int
    threads: int = 1


def write_trainer_module(folder: Path, budget: Budget) -> Path:
    """Write the demo trainers with `budget` into `folder`; returns the module file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODULE_NAME}.py"
    path.write_text(_TEMPLATE.format(epochs=budget.epochs, iterations=budget.iterations,
                                     val_iterations=budget.val_iterations,
                                     threads=budget.threads, unetrpp=UNETRPP_TRAINER,
                                     nnunet=NNUNET_TRAINER))
    return path
