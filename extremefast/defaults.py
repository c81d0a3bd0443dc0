"""The paper's settings, in one place: its variants (Table 1), the pseudo labels (:class:`~extremefast.pseudo.PseudoLabelConfig`),
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

# variant -> (random-walker regularisation, point channel input, point loss, attention, real masks)
VARIANTS = {
    "a": dict(rw_regularise=False, point_channel=True, point_loss=False, attention="none", full=False),
    "b": dict(rw_regularise=True, point_channel=False, point_loss=False, attention="none", full=False),
    "c": dict(rw_regularise=True, point_channel=True, point_loss=False, attention="none", full=False),
    "d": dict(rw_regularise=True, point_channel=True, point_loss=True, attention="none", full=False),
    "e": dict(rw_regularise=True, point_channel=True, point_loss=True, attention="gate", full=False),
    "f": dict(rw_regularise=True, point_channel=True, point_loss=True, attention="point", full=False),
    "full": dict(rw_regularise=False, point_channel=True, point_loss=False, attention="none", full=True),
}

SELECTIONS = ("masks", "settle")

VARIANT_NAMES = {
    "a": "weak. sup. (w/o RW) Dice",
    "b": "weak. sup. (w RW; no extr. points channel) Dice",
    "c": "weak. sup. (w RW) Dice",
    "d": "weak. sup. (w RW) Dice + PL",
    "e": "weak. sup. (w RW) Dice + PL + Attn.",
    "f": "weak. sup. (w RW) Dice + PL + Pt. Attn.",
    "full": "fully sup. Dice",
}
