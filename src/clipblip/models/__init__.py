from .blip import BLIP
from .clip import CLIP

__all__ = ["BLIP", "CLIP"]
