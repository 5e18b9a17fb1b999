"""Trainer settings declared as class attributes, so that each variant changes one thing in one line.

nnU-Net's trainer sets its budget and optimiser settings as instance attributes in `__init__`, and
it records its init arguments by reading `inspect.signature(self.__init__)`, so a variant that
changes a setting normally re-implements `__init__` with that exact signature. `DeclaredSettings`
does that once: after nnU-Net's `__init__`, every name of `SETTINGS` that the class (or a base)
declares as a class attribute replaces nnU-Net's value::

    class nnUNetTrainerUNETRPP_50epochs(nnUNetTrainerUNETRPP):
        num_epochs = 50

It works with stock nnU-Net trainers as well (`class T(DeclaredSettings, nnUNetTrainer)`), and a
subclass that sets attributes in its own `__init__` after `super().__init__` still has the last word.
"""
from __future__ import annotations

import torch

#: nnU-Net trainer attributes a class may declare.
SETTINGS = ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr", "weight_decay",
            "enable_deep_supervision")


class DeclaredSettings:
    """Mixin for nnU-Net trainers: class attributes named in `SETTINGS` override nnU-Net's defaults."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for name in SETTINGS:
            declared = getattr(type(self), name, None)
            if declared is not None:
                setattr(self, name, declared)
