"""Variants of nnUNetTrainerUNETRPP; each changes one thing, declared as class attributes (`settings.py`)."""
from __future__ import annotations

import torch

from nnunetv2_unetrpp.network_architecture.official_variants import official_network_kwargs
from nnunetv2_unetrpp.trainers.lr_schedule import WarmupPolyLR
from nnunetv2_unetrpp.trainers.nnUNetTrainerUNETRPP import nnUNetTrainerUNETRPP


class nnUNetTrainerUNETRPP_smoke(nnUNetTrainerUNETRPP):
    """2 epochs x 5 iterations, 2 validation iterations: for tests and smoke runs only."""

    num_epochs, num_iterations_per_epoch, num_val_iterations_per_epoch = 2, 5, 2


class nnUNetTrainerUNETRPP_50epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 50 epochs (poly decay over 50)."""

    num_epochs = 50


class nnUNetTrainerUNETRPP_100epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 100 epochs (poly decay over 100)."""

    num_epochs = 100


class nnUNetTrainerUNETRPP_250epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 250 epochs (poly decay over 250)."""

    num_epochs = 250


class nnUNetTrainerUNETRPP_500epochs(nnUNetTrainerUNETRPP):
    """Shorter schedule: 500 epochs (poly decay over 500)."""

    num_epochs = 500


class nnUNetTrainerUNETRPPNoDeepSupervision(nnUNetTrainerUNETRPP):
    """Loss on the full-resolution output only."""

    enable_deep_supervision = False


class nnUNetTrainerUNETRPP_officialLayout(nnUNetTrainerUNETRPP):
    """The authors' spatial-attention output layout (their issue 62) instead of the corrected one."""

    architecture_overrides = {"spatial_layout": "official"}


class nnUNetTrainerUNETRPP_SynapseGeometry(nnUNetTrainerUNETRPP):
    """The paper's Synapse network exactly: patch 64x128x128, stem 2x4x4, official layout.

    Its state_dict matches `build_official_variant("synapse")`, so converted official weights
    (nnUNetv2_unetrpp_convert_official) fine-tune with `-pretrained_weights`; nnU-Net never loads the
    segmentation heads (`.seg_layers.`), so these start fresh for any number of classes. 3D, one input channel.
    """

    architecture_overrides = official_network_kwargs("synapse")


def _published_architecture(variant: str) -> dict:
    """A published variant's architecture hyperparameters and spatial layout, without its geometry."""
    kwargs = official_network_kwargs(variant)
    for geometry in ("patch_size", "stem_stride", "strides"):
        del kwargs[geometry]
    return kwargs


class nnUNetTrainerUNETRPP_SynapseArch(nnUNetTrainerUNETRPP):
    """The published Synapse/BTCV architecture (shared E/F, one conv block, attention dropout 0.15,
    official layout) at the geometry of the dataset's plan: published Synapse weights transfer to it
    (nnUNetv2_unetrpp_transfer_weights)."""

    architecture_overrides = _published_architecture("synapse")


class nnUNetTrainerUNETRPP_ACDCArch(nnUNetTrainerUNETRPP):
    """The published ACDC architecture (separate E/F, two conv blocks, official layout) at the plan's geometry."""

    architecture_overrides = _published_architecture("acdc")


class nnUNetTrainerUNETRPP_LungArch(nnUNetTrainerUNETRPP):
    """The published Decathlon-Lung architecture (as ACDC's) at the plan's geometry."""

    architecture_overrides = _published_architecture("lung")


class nnUNetTrainerUNETRPP_BraTSArch(nnUNetTrainerUNETRPP):
    """The published BraTS architecture (one shared bias-free E/F matrix, sum fusion, official layout) at
    the plan's geometry."""

    architecture_overrides = _published_architecture("tumor")


#: The trainer of each published architecture at a plan's geometry, by official variant name.
PUBLISHED_ARCHITECTURE_TRAINERS = {
    "synapse": nnUNetTrainerUNETRPP_SynapseArch, "btcv": nnUNetTrainerUNETRPP_SynapseArch,
    "acdc": nnUNetTrainerUNETRPP_ACDCArch, "lung": nnUNetTrainerUNETRPP_LungArch,
    "tumor": nnUNetTrainerUNETRPP_BraTSArch,
}


class nnUNetTrainerUNETRPP_AdamW(nnUNetTrainerUNETRPP):
    """The optimiser of nnU-Net's in-tree transformer trainers: AdamW 3e-4, weight decay 5e-2,
    betas (0.9, 0.98), 50 warm-up epochs then poly decay. nnU-Net's gradient clipping (12) stays."""

    initial_lr = 3e-4
    weight_decay = 5e-2
    #: linear warm-up epochs (fewer when the schedule is shorter)
    warmup_epochs = 50

    def configure_optimizers(self):
        # nnUNetTrainer_warmup (base of nnU-Net's Primus trainers) swaps optimiser and scheduler at epoch 50 and
        # replaces load_checkpoint wholesale, so its two schedulers are stepped here as one (lr_schedule.py)
        optimizer = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                      betas=(0.9, 0.98))
        scheduler = WarmupPolyLR(optimizer, self.initial_lr, min(self.warmup_epochs, self.num_epochs), self.num_epochs)
        return optimizer, scheduler
