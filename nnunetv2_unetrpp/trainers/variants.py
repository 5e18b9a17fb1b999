"""Variants of nnUNetTrainerUNETRPP; each changes one thing."""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import _LRScheduler

from nnunetv2_unetrpp.network_architecture.official import official_network_kwargs
from nnunetv2_unetrpp.trainers.nnUNetTrainerUNETRPP import nnUNetTrainerUNETRPP


class nnUNetTrainerUNETRPP_smoke(nnUNetTrainerUNETRPP):
    """2 epochs x 5 iterations, 2 validation iterations: for tests and smoke runs only."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 5
        self.num_val_iterations_per_epoch = 2


class nnUNetTrainerUNETRPP_50epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 50 epochs (poly decay over 50)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 50


class nnUNetTrainerUNETRPP_100epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 100 epochs (poly decay over 100)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 100


class nnUNetTrainerUNETRPP_250epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 250 epochs (poly decay over 250)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 250


class nnUNetTrainerUNETRPP_500epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 500 epochs (poly decay over 500)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 500


class nnUNetTrainerUNETRPPNoDeepSupervision(nnUNetTrainerUNETRPP):
    """Loss on the full-resolution output only."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False


class nnUNetTrainerUNETRPP_officialLayout(nnUNetTrainerUNETRPP):
    """The authors' spatial-attention output layout (their issue 62) instead of the corrected one."""

    architecture_overrides = {"spatial_layout": "official"}


class nnUNetTrainerUNETRPP_SynapseGeometry(nnUNetTrainerUNETRPP):
    """The paper's Synapse network exactly: patch 64x128x128, stem 2x4x4, official layout.

    Its state_dict matches `build_official_variant("synapse")`, so converted official weights
    (nnUNetv2_unetrpp_convert_official) fine-tune with `-pretrained_weights` (the segmentation
    heads are re-initialised when the number of classes differs). 3D, one input channel.
    """

    architecture_overrides = official_network_kwargs("synapse")


class WarmupPolyLR(_LRScheduler):
    """Linear warm-up to `max_lr` over `warmup_steps`, then nnU-Net's poly decay to 0."""

    def __init__(self, optimizer, max_lr: float, warmup_steps: int, max_steps: int, exponent: float = 0.9):
        self.max_lr, self.warmup_steps, self.max_steps, self.exponent = max_lr, warmup_steps, max_steps, exponent
        super().__init__(optimizer, -1)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.max_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.max_steps - self.warmup_steps)
        return self.max_lr * (1 - min(step - self.warmup_steps, decay_steps) / decay_steps) ** self.exponent

    def get_lr(self):
        return [self.lr_at(self.last_epoch)] * len(self.optimizer.param_groups)

    def step(self, current_step: int | None = None) -> None:
        self.last_epoch = self.last_epoch + 1 if current_step is None else current_step
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.last_epoch)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class nnUNetTrainerUNETRPP_AdamW(nnUNetTrainerUNETRPP):
    """The optimiser of nnU-Net's in-tree transformer trainers: AdamW 3e-4, weight decay 5e-2,
    betas (0.9, 0.98), 50 warm-up epochs then poly decay. nnU-Net's gradient clipping (12) stays."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 3e-4
        self.weight_decay = 5e-2
        self.warmup_epochs = 50

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                      betas=(0.9, 0.98))
        scheduler = WarmupPolyLR(optimizer, self.initial_lr, min(self.warmup_epochs, self.num_epochs), self.num_epochs)
        return optimizer, scheduler
