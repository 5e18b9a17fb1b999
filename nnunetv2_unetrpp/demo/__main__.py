"""`python -m nnunetv2_unetrpp.demo`: same as `nnUNetv2_unetrpp_demo`."""
import sys

from nnunetv2_unetrpp.demo.cli import main

sys.exit(main())
