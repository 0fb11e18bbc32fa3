"""Tokenizers on the `tokenizers` library; CLIP's byte-level BPE lives in clip_bpe.py."""

from clipblip.text.clip_bpe import ClipTokenizer
from clipblip.text.wordpiece import BlipTokenizer

__all__ = ["BlipTokenizer", "ClipTokenizer"]
