"""The shared blocks: attention masks and KV cache against plain recomputation, activations, folded beams."""

import torch

from clipblip.nn import Attention, CrossAttention, KVCache, QuickGELU, padding_mask


def test_quick_gelu_inplace_equals_reference_and_keeps_gradients():
    x = torch.randn(5, 7)
    ref = x * torch.sigmoid(1.702 * x)
    assert torch.equal(QuickGELU()(x.clone()), ref)
    with torch.no_grad():
        y = x.clone()
        assert torch.equal(QuickGELU(inplace=True)(y), ref) and torch.equal(y, ref)
    leaf = x.clone().requires_grad_()
    QuickGELU(inplace=True)(leaf).sum().backward()  # in-place on a leaf would raise
    assert leaf.grad is not None


def test_kv_cache_decoding_equals_full_causal_pass():
    attn = Attention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    full = attn(x, causal=True)
    cache = KVCache()
    steps = [attn(x[:, :3], causal=True, cache=cache)]  # a prompt, then one token at a time
    steps += [attn(x[:, i:i + 1], causal=True, cache=cache) for i in range(3, 6)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-6)
    assert len(cache) == 6


def test_padding_mask_hides_padded_keys():
    attn = Attention(16, 4).eval()
    x = torch.randn(1, 5, 16)
    keep = torch.tensor([[1, 1, 1, 0, 0]])
    masked = attn(x, mask=padding_mask(keep, 5, causal=False))
    assert torch.allclose(masked[:, :3], attn(x[:, :3]), atol=1e-6)
    causal = attn(x, mask=padding_mask(keep, 5, causal=True))
    assert torch.allclose(causal[:, :3], attn(x[:, :3], causal=True), atol=1e-6)


def test_cross_attention_folds_beams_without_repeating_the_image():
    xattn = CrossAttention(16, 4, kv_dim=24).eval()
    image = torch.randn(2, 10, 24)
    queries = torch.randn(6, 4, 16)  # 3 beams per image, rows grouped by image
    folded = xattn(queries, kv=xattn.context_kv(image))
    repeated = xattn(queries, context=image.repeat_interleave(3, dim=0))
    assert torch.allclose(folded, repeated, atol=1e-6)


def test_attention_matches_the_textbook_formula():
    attn = Attention(8, 2).eval()
    x = torch.randn(1, 4, 8)
    q, k, v = attn.qkv(x).chunk(3, -1)

    def heads(t):
        return t.view(1, 4, 2, 4).transpose(1, 2)

    w = (heads(q) @ heads(k).transpose(-1, -2) / 2.0).softmax(-1)
    ref = attn.proj((w @ heads(v)).transpose(1, 2).reshape(1, 4, 8))
    assert torch.allclose(attn(x), ref, atol=1e-6)


def test_first_token_equals_the_full_block_at_position_zero():
    from clipblip.nn import PreNormBlock

    block = PreNormBlock(16, 4, 32, "quick_gelu", 1e-5).eval()
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        assert torch.allclose(block.first_token(x), block(x)[:, :1], atol=1e-6)
