"""Pre-trained UNETR++ weights: the authors' published checkpoints and nnU-Net v1 plans imported into
nnU-Net v2 (`import_official`, `v1_plans`, `convert_official`), and weights of one plan moved into
another plan's network (`transfer_weights`)."""
