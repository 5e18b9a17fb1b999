"""Cost measurements of UNETR++ against stock nnU-Net: parameters, FLOPs, time, peak memory."""
