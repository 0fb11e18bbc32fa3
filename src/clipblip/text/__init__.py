"""Tokenizers on the `tokenizers` library; CLIP's byte-level BPE lives in clip_bpe.py."""

from clipblip.text.clip_bpe import ClipTokenizer

__all__ = ["ClipTokenizer"]
