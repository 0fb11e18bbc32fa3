"""Tokenizers on the `tokenizers` library; CLIP's byte-level BPE lives in clip_bpe.py, BERT's
WordPiece in wordpiece.py, closed word vocabularies in wordlevel.py."""

from clipblip.text.clip_bpe import ClipTokenizer
from clipblip.text.wordlevel import BlipWordTokenizer, ClipWordTokenizer
from clipblip.text.wordpiece import BlipTokenizer

__all__ = ["BlipTokenizer", "BlipWordTokenizer", "ClipTokenizer", "ClipWordTokenizer"]
