import runpy
from pathlib import Path

from setuptools import find_packages, setup

# The one source of the dependency ranges, read without importing the package (nothing is installed yet).
DEPENDENCIES = runpy.run_path(str(Path(__file__).resolve().parent / "nnunetv2_unetrpp" / "dependencies.py"))

setup(
    name="nnunetv2_unetrpp",
    version="0.2.0",
    description="UNETR++ (Shaker et al., IEEE TMI 2024) as nnU-Net v2 trainers, with a fair comparison against stock nnU-Net",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=DEPENDENCIES["PYTHON_REQUIRES"],
    packages=find_packages(include=["nnunetv2_unetrpp", "nnunetv2_unetrpp.*"]),
    # the nnUNet_extTrainer shim is a plain folder (no __init__.py): nnU-Net imports it by path
    package_data={"nnunetv2_unetrpp": ["nnunet_ext/*.py"]},
    install_requires=DEPENDENCIES["INSTALL_REQUIRES"],
    extras_require={"test": DEPENDENCIES["TEST_REQUIRES"]},
    entry_points={
        "console_scripts": [
            "nnUNetv2_unetrpp_convert_official=nnunetv2_unetrpp.pretrained.convert_official:main",
            "nnUNetv2_unetrpp_transfer_weights=nnunetv2_unetrpp.pretrained.transfer_weights:main",
            "nnUNetv2_unetrpp_import_official=nnunetv2_unetrpp.pretrained.import_official:main",
            "nnUNetv2_unetrpp_env=nnunetv2_unetrpp.env:main",
            "nnUNetv2_unetrpp_compare=nnunetv2_unetrpp.compare.cli:main",
            "nnUNetv2_unetrpp_demo=nnunetv2_unetrpp.demo.cli:main",
            "nnUNetv2_unetrpp_benchmark=nnunetv2_unetrpp.benchmarking.cli:main",
            "nnUNetv2_unetrpp_convert_synapse=nnunetv2_unetrpp.paper_datasets:main_synapse",
            "nnUNetv2_unetrpp_convert_acdc=nnunetv2_unetrpp.paper_datasets:main_acdc",
            "nnUNetv2_unetrpp_convert_lung=nnunetv2_unetrpp.paper_datasets:main_lung",
            "nnUNetv2_unetrpp_convert_brats=nnunetv2_unetrpp.paper_datasets:main_brats",
            "nnUNetv2_unetrpp_plan_experiment=nnunetv2_unetrpp.planner:main",
            "nnUNetv2_unetrpp_plan_and_preprocess=nnunetv2_unetrpp.planner:plan_and_preprocess",
        ],
    },
)
