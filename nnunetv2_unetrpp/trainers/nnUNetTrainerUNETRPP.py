"""UNETR++ as an nnU-Net v2 trainer: nnU-Net's recipe (the paper's), UNETR++ network, on any plans.

Plans of the UNETR++ planner already name the network; on stock plans the trainer writes UNETR++'s
architecture block into the plans (`plans_geometry`) before nnU-Net records them, so the results
folder's plans.json names the trained network for nnU-Net's `get_network_from_plans`.
"""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunetv2_unetrpp.compat import check_nnunet_version
from nnunetv2_unetrpp.trainers.plans_geometry import build_network, prepare_configuration
from nnunetv2_unetrpp.trainers.settings import DeclaredSettings

check_nnunet_version()

if not __name__.startswith("nnunetv2_unetrpp."):
    raise ImportError(
        f"nnunetv2_unetrpp's trainers were imported as {__name__!r}: nnUNet_extTrainer points at the package source "
        "instead of its shim folder. Set it with: eval \"$(nnUNetv2_unetrpp_env)\""
    )

#: Loss weights of the three deep-supervision outputs (at `UNETRPP.output_strides`: full, 1/stem,
#: 1/(stem x first downsampling stride)), as in the paper.
DEEP_SUPERVISION_WEIGHTS = (4 / 7, 2 / 7, 1 / 7)


class nnUNetTrainerUNETRPP(DeclaredSettings, nnUNetTrainer):
    """UNETR++ trained with nnU-Net's default recipe, which is the paper's: SGD 1e-2, Nesterov
    0.99, weight decay 3e-5, poly decay, 1000 epochs x 250 iterations, Dice + CE, deep
    supervision with weights 4/7, 2/7, 1/7.

    Variants declare what they change as class attributes (`num_epochs = 50`; see `settings.py`).
    """

    #: UNETRPP keyword overrides (and `patch_size`, `stem_stride`, `strides`) of a variant.
    architecture_overrides: dict = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        notes = self.prepare_plans(plans, configuration)
        super().__init__(plans, configuration, fold, dataset_json, device)
        for note in notes:
            self.print_to_log_file(note)

    @classmethod
    def prepare_plans(cls, plans: dict, configuration: str) -> list[str]:
        """Write this trainer's UNETR++ geometry (and a fitting patch size) into `plans`, as training
        does before nnU-Net records them; returns notes on what changed (`plans_geometry.py`)."""
        return prepare_configuration(plans, configuration, cls.architecture_overrides)

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """nnU-Net's `get_network_from_plans`; plans.json of version <= 0.2.0 (which predicts through
        this method) is read as its architecture block."""
        return build_network(configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision)

    def _get_deep_supervision_scales(self):
        """The network's three output scales (nnU-Net's default adds a fourth target no head uses)."""
        if not self.enable_deep_supervision:
            return None
        network = self.network.module if self.is_ddp else self.network
        network = getattr(network, "_orig_mod", network)  # torch.compile's wrapper
        return [[1 / s for s in stride] for stride in network.output_strides]

    def _build_loss(self):
        loss = super()._build_loss()
        if self.enable_deep_supervision:
            loss.weight_factors = DEEP_SUPERVISION_WEIGHTS
        return loss
