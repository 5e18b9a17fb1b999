"""Fair comparison of segmentation methods (UNETR++ vs stock nnU-Net): ``nnUNetv2_unetrpp_compare``.

Modules: ``inputs`` (arguments, folders, cases), ``labels`` (labels/regions), ``evaluate`` (per-case work in
worker processes), ``metrics`` (Dice/HD95/NSD), ``stats`` (mean/std/median, Wilcoxon), ``report``
(summary.json / summary.md, the terminal's Dice table), ``verdict`` (the result in plain words), ``plots`` (box
plots), ``learning_curves`` (from nnU-Net's training record, with ``-models`` or model-folder ``-pred``),
``montage`` (representative slices with outlines, with ``-images``), ``cost`` (parameters, FLOPs, timings), ``cli``.

The metrics (Dice, HD95 in mm and voxels, NSD, empty masks) are defined in ``metrics``'s docstring; labels,
statistics, cases and outputs in docs/COMPARE.md.
"""
