"""Annotating new scans with a trained model: clicks in, mask out, in the image's space."""
from .evaluate import evaluate
from ..data.points import read_points, voxel_to_world, world_to_voxel, write_points
from .predictor import Predictor, annotate, predict_file

__all__ = ["Predictor", "annotate", "evaluate", "predict_file", "read_points", "voxel_to_world", "world_to_voxel",
           "write_points"]
