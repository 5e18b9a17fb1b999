"""`nnUNetv2_unetrpp_convert_official`: an official UNETR++ checkpoint file -> a state_dict file that
`build_official_variant` and `nnUNetv2_train -pretrained_weights` load."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.network_architecture.official_checkpoint import convert_official_state_dict
from nnunetv2_unetrpp.network_architecture.official_variants import OFFICIAL_VARIANTS
from nnunetv2_unetrpp.own_output import check_replaceable, stamp
from nnunetv2_unetrpp.safe_loading import TRUST_PICKLES_HELP, UnsafePickleError, load_checkpoint

COMMAND = "nnUNetv2_unetrpp_convert_official"


@command
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Convert an official UNETR++ checkpoint (model_final_checkpoint.model) into a state_dict "
        "for nnunetv2_unetrpp's network (build_official_variant(VARIANT)). Output is saved as "
        "{'network_weights': state_dict, 'variant': VARIANT}, usable with nnUNetv2_train -pretrained_weights.",
    )
    parser.add_argument("input", type=Path, help="official checkpoint file")
    parser.add_argument("output", type=Path, help="where to write the converted weights (.pth)")
    parser.add_argument("-v", "--variant", required=True, choices=sorted(OFFICIAL_VARIANTS))
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if this command wrote it")
    parser.add_argument("--trust_pickles", action="store_true", help=TRUST_PICKLES_HELP)
    args = parser.parse_args(argv)
    if not args.input.is_file():
        raise UserError(f"{args.input} does not exist or is not a file")
    check_replaceable(args.output, args.overwrite, COMMAND, (args.input,))
    try:
        checkpoint = load_checkpoint(args.input, args.trust_pickles)
    except (UnsafePickleError, ValueError) as e:
        raise UserError(str(e)) from None
    try:
        state_dict = convert_official_state_dict(checkpoint, args.variant)
    except ValueError as e:
        raise UserError(str(e)) from None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": state_dict, "variant": args.variant, **stamp(COMMAND)}, args.output)
    print(f"wrote {len(state_dict)} tensors for variant {args.variant!r} to {args.output}")


if __name__ == "__main__":
    raise SystemExit(main())
