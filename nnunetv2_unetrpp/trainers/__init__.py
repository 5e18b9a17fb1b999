"""nnU-Net v2 trainers for UNETR++. Import them from here; nnU-Net's `-tr` finds them through the
shim folder that `nnUNetv2_unetrpp_env` puts into nnUNet_extTrainer."""
from nnunetv2_unetrpp.trainers.nnUNetTrainerUNETRPP import DEEP_SUPERVISION_WEIGHTS, nnUNetTrainerUNETRPP
from nnunetv2_unetrpp.trainers.variants import (
    nnUNetTrainerUNETRPP_50epochs,
    nnUNetTrainerUNETRPP_100epochs,
    nnUNetTrainerUNETRPP_250epochs,
    nnUNetTrainerUNETRPP_500epochs,
    nnUNetTrainerUNETRPP_AdamW,
    nnUNetTrainerUNETRPP_ACDCArch,
    nnUNetTrainerUNETRPP_BraTSArch,
    nnUNetTrainerUNETRPP_LungArch,
    nnUNetTrainerUNETRPP_officialLayout,
    nnUNetTrainerUNETRPP_smoke,
    nnUNetTrainerUNETRPP_SynapseArch,
    nnUNetTrainerUNETRPP_SynapseGeometry,
    nnUNetTrainerUNETRPPNoDeepSupervision,
)

__all__ = [
    "DEEP_SUPERVISION_WEIGHTS", "nnUNetTrainerUNETRPP", "nnUNetTrainerUNETRPP_smoke",
    "nnUNetTrainerUNETRPP_50epochs", "nnUNetTrainerUNETRPP_100epochs", "nnUNetTrainerUNETRPP_250epochs",
    "nnUNetTrainerUNETRPP_500epochs", "nnUNetTrainerUNETRPPNoDeepSupervision", "nnUNetTrainerUNETRPP_officialLayout",
    "nnUNetTrainerUNETRPP_SynapseGeometry", "nnUNetTrainerUNETRPP_AdamW",
    "nnUNetTrainerUNETRPP_SynapseArch", "nnUNetTrainerUNETRPP_ACDCArch", "nnUNetTrainerUNETRPP_LungArch",
    "nnUNetTrainerUNETRPP_BraTSArch",
]
