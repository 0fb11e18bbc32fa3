from .attention import Attention, CrossAttention, KVCache, padding_mask
from .blocks import PostNormBlock, PreNormBlock, run_block
from .mlp import MLP, QuickGELU, activation

__all__ = ["Attention", "CrossAttention", "KVCache", "MLP", "PostNormBlock", "PreNormBlock", "QuickGELU",
           "activation", "padding_mask", "run_block"]
