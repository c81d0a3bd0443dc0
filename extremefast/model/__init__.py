"""The model that training writes and prediction reads: its configuration (the paper's
variants as switches), the network and its input crop, and checkpoints."""
from ..defaults import SELECTIONS, VARIANT_NAMES, VARIANTS
from .checkpoint import convert_checkpoint, load_checkpoint, save_checkpoint, save_model
from .config import TrainConfig, config_from_options, cpu_defaults, default_config, describe_sizes
from .network import (build_model, network_box, network_input, predict_probability, probability_on_image, resolve_torch_device,
                      unwrap)

__all__ = ["TrainConfig", "VARIANTS", "VARIANT_NAMES", "SELECTIONS", "default_config", "config_from_options", "cpu_defaults",
           "describe_sizes", "build_model", "network_box", "network_input", "predict_probability", "probability_on_image",
           "resolve_torch_device", "unwrap", "load_checkpoint", "convert_checkpoint",
           "save_checkpoint", "save_model"]
