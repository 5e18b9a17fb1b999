"""Fair comparison of segmentation methods (UNETR++ vs stock nnU-Net): ``nnUNetv2_unetrpp_compare``.

Modules: ``inputs`` (arguments, folders, cases), ``labels`` (labels/regions), ``evaluate`` (per-case work in
worker processes), ``metrics`` (Dice/HD95/NSD), ``stats`` (mean/std/median, Wilcoxon), ``report``
(summary.json / summary.md, the terminal's Dice table), ``verdict`` (the result in plain words), ``plots`` (box
plots), ``learning_curves`` (from nnU-Net's training record, with ``-models`` or model-folder ``-pred``),
``montage`` (representative slices with outlines, with ``-images``), ``cost`` (parameters, FLOPs, timings), ``cli``.

METRICS
=======

Computed per case and per label (or region), on binary masks, with the spacing from the image header (mm).

* ``dice``: 2|P∩R| / (|P|+|R|), by voxel counting.
* ``hd95_mm``: MONAI ``compute_hausdorff_distance(percentile=95, spacing=header spacing)``. Surface voxels
  are ``mask XOR binary_erosion(mask)`` (cross-shaped element; outside the image is background). For each
  surface voxel the Euclidean distance to the nearest surface voxel of the other mask is taken, in both
  directions; HD95 = max(q95(P->R), q95(R->P)), the larger of the two directed 95th percentiles, each with
  linear interpolation (``torch.quantile``). It is NOT the 95th percentile of the pooled distances.
* ``hd95_vox``: the same with spacing 1, i.e. in voxels: the unit of the UNETR++ paper's tables.
* ``nsd``: MONAI ``compute_surface_dice(class_thresholds=[tolerance], spacing=header spacing)`` without
  sub-voxel areas: (surface voxels of P within ``tolerance`` mm of R's surface + surface voxels of R
  within ``tolerance`` mm of P's surface) / (all surface voxels of P and R). Tolerance: 1 mm by default
  (``--nsd_tolerance_mm``).

Empty masks (decided before MONAI is called, so every value is finite and every mean is defined):

* both P and R empty: Dice 1, HD95 0, NSD 1 (a correct "absent");
* exactly one empty: Dice 0, NSD 0, HD95 = the image diagonal sqrt(sum((size_i * spacing_i)^2)) in mm
  (with spacing 1 for ``hd95_vox``): the worst distance the image allows.

Labels: from ``-dataset_json`` (``labels``; a list value is a region = union of its values, reported under
the region's name; an int value is reported under that value; the ``ignore`` label is not evaluated and
reference voxels carrying it are set to background in both masks, which for Dice equals nnU-Net's
exclusion from TP/FP/FN). Without dataset.json: every non-zero value found in the references.

Statistics: per label and ``overall`` (per-case mean over labels): mean, sample std (ddof=1), median over
cases; ``mean`` = mean over labels of the per-label means. Paired two-sided Wilcoxon signed-rank test
(``scipy.stats.wilcoxon``) of every method against the first one, per label and metric; p = 1 when all
paired differences are zero.

Cases: every reference case must be predicted by every method; an extra prediction case is an error by
default (``--allow_extra`` skips it with a warning; ``--subset`` compares only the first method's cases).
"""
