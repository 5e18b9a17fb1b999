"""The dependency ranges of this package: the single source for setup.py (which reads this file
without importing the package), the runtime version check and the README.

How each end of a range is tested: `constraints.txt` pins the versions of the last passing run
of the whole suite (CI installs them); they lie at the top of the ranges. Bounds that were run
otherwise, each in a throwaway environment with the pinned versions of everything else:
- torch: 2.15.0 (the top) ran the quick tier (`-m "not slow"`); the floor 2.6 ran the safe loader's,
  the network's, the v1 import's and the v1 plans' quick tests. torch 2.4.1 fails the safe loader's
  (it has no `torch.serialization.safe_globals`); 2.5 was not run, so the floor is 2.6.
  2.9.x is left out as nnunetv2 2.8 leaves it out (its own `torch!=2.9.*`).
- numpy: the floor 1.26.4 ran the quick tier (with scipy, pandas and the rest as pinned except
  pandas 2.2, the last that accepts numpy 1.x); the safe loader reads the numpy 1 and numpy 2 names
  of numpy's pickled globals, and `numpy.dtypes` (1.25) is used.
- nnunetv2 needs >= 2.8 because `nnUNet_extTrainer`, the only way its commands find trainers outside
  its own folder, first shipped in 2.8.0 (`compat.py` refuses older ones); its trainer API changed in
  2.3 and 2.7, so the upper bound stays at the next minor release until that one is tested.
The other floors (dynamic-network-architectures, monai, scipy, matplotlib, SimpleITK, packaging,
tqdm) are not run by any test: they are the releases whose APIs the package was written against.
"""

#: Python versions: numpy, scipy and pandas at the versions of constraints.txt need 3.11.
PYTHON_REQUIRES = ">=3.11"

NNUNET_REQUIREMENT = "nnunetv2>=2.8,<2.9"

INSTALL_REQUIRES = [
    "torch>=2.6,!=2.9.*,<2.16",
    NNUNET_REQUIREMENT,
    "dynamic-network-architectures>=0.4.1,<0.5",
    "monai>=1.4,<1.7",
    "numpy>=1.26,<3",
    "scipy>=1.10,<2",
    "matplotlib>=3.7,<4",
    "SimpleITK>=2.2,<3",
    "packaging>=22",
    "tqdm>=4.60",
]

TEST_REQUIRES = ["pytest>=7,<10"]
