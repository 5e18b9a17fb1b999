"""Shim for nnU-Net's external-trainer lookup (nnUNet_extTrainer points at this folder).

nnU-Net imports the modules of that folder under their bare names and forgets them afterwards;
re-exporting keeps a single class object per trainer, with its real module name.
"""
from nnunetv2_unetrpp.trainers import *  # noqa: F401,F403
from nnunetv2_unetrpp.trainers import __all__  # noqa: F401
