"""`nnUNetv2_unetrpp_demo`: UNETR++ against stock nnU-Net on generated abdominal-CT-like data, end to end."""
