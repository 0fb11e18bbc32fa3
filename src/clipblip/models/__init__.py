from .clip import CLIP

__all__ = ["CLIP"]
