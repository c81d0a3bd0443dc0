"""Paper steps 1-2: clicks -> crop -> scribbles -> seeds -> random-walker pseudo label."""
from ..data.points import arrange_clicks, check_points
from .clicks import extreme_points, simulate_clicks
from .gaussians import point_channel
from .geodesic import geodesic_scribbles, gradient_cost, shortest_path
from .pseudo_label import (PRESETS, PseudoLabel, PseudoLabelConfig, get_preset, normalise_intensity,
                           prepare_crop, pseudo_label_crop, pseudo_label_from_points)
from .roi import Box, crop_resample, paste_back, roi_box
from .seeds import scribble_seeds, uncertainty_seeds

__all__ = ["arrange_clicks", "check_points", "extreme_points", "simulate_clicks", "geodesic_scribbles", "gradient_cost",
           "shortest_path", "point_channel", "PRESETS", "PseudoLabel", "PseudoLabelConfig", "get_preset",
           "normalise_intensity", "prepare_crop", "pseudo_label_crop", "pseudo_label_from_points", "Box",
           "crop_resample", "paste_back", "roi_box", "scribble_seeds", "uncertainty_seeds"]
