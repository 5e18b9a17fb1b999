"""The dependency ranges of this package: the single source for setup.py (which reads this file
without importing the package), the runtime version check and the README.

Each range is the one the test-suite passes with; `constraints.txt` pins the exact versions of
the last passing run. nnunetv2 needs >= 2.8 because `nnUNet_extTrainer`, the only way its
commands find trainers outside its own folder, first shipped in 2.8.0; its trainer API changed
in 2.3 and 2.7, so the upper bound stays at the next minor release until that one is tested.
"""

#: Python versions: numpy, scipy and pandas at the versions of constraints.txt need 3.11.
PYTHON_REQUIRES = ">=3.11"

NNUNET_REQUIREMENT = "nnunetv2>=2.8,<2.9"

INSTALL_REQUIRES = [
    "torch>=2.4,<2.15",
    NNUNET_REQUIREMENT,
    "dynamic-network-architectures>=0.4.1,<0.5",
    "monai>=1.4,<1.7",
    "numpy>=1.24,<3",
    "scipy>=1.10,<2",
    "matplotlib>=3.7,<4",
    "SimpleITK>=2.2,<3",
    "packaging>=22",
    "tqdm>=4.60",
]

TEST_REQUIRES = ["pytest>=7,<10"]
