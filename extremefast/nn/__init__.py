from .segresnet import ATTENTION, AttentionGate, ResBlock, SegResNet

__all__ = ["SegResNet", "ResBlock", "AttentionGate", "ATTENTION"]
