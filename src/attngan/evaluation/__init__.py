"""Networks and procedures that judge generated images (classifiers, feature extractors)."""

#: The measures of ``attngan evaluate`` (:func:`attngan.evaluation.evaluate.evaluate`), in the
#: order they are reported; here, apart from the heavy modules, so the command line can list them.
METRICS = (
    "fid",
    "kid",
    "is",
    "r_precision",
    "semantic",
    "shape_realism",
    "variety",
    "stage_agreement",
)
