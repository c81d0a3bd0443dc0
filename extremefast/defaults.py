"""The paper's settings, in one place: the pseudo labels (:class:`~extremefast.pseudo.PseudoLabelConfig`),
the training (:class:`~extremefast.model.TrainConfig`), the crop (:func:`~extremefast.pseudo.roi.roi_box`)
and the command line all read them from here.

Roth et al., "Going to Extremes" (``shared/paper.md``), section 2: the clicks' bounding box grown by
20 mm on every side and resampled to 128³; the point channel's Gaussians; CT windowed before the
random walker and the network.
"""
from __future__ import annotations

# the network's and the random walker's crop, voxels per axis
CROP_SIZE = 128
# the margin around the clicks' bounding box, mm on every side
PAD_MM = 20.0
# the CT intensity window (HU) mapped to [0, 1]: an abdominal soft-tissue window
CT_WINDOW = (-160.0, 240.0)
# the width (standard deviation, crop voxels) of the point channel's Gaussians
POINT_SIGMA = 3.0
