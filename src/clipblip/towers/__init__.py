from .bert import BertTower, LMHead
from .clip_text import TextTransformer
from .resnet import ModifiedResNet
from .vit import VisionTransformer, resample_pos_embed

__all__ = ["BertTower", "LMHead", "ModifiedResNet", "TextTransformer", "VisionTransformer", "resample_pos_embed"]
