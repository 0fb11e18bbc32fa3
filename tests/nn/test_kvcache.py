"""The preallocated key/value cache and BLIP's decoder over it: the same logits, bit for bit, as the cache that grew
by torch.cat (kept here, and only here, as the reference); the static-shape step (CUDA graphs' path) run eagerly on
the CPU against the eager one; on CUDA, captured-graph captions against eager ones."""

import pytest
import torch

import clipblip
from clipblip.errors import ClipBlipError
from clipblip.generate import GenerationConfig, generate
from clipblip.models.blip import _GRAPHS, TextDecoder, _GraphStep
from clipblip.nn import KVCache


class CatCache:
    """The cache as it was: one torch.cat per step and block, beam reorders by index_select into a new tensor."""

    def __init__(self):
        self.k = self.v = None

    def __len__(self):
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k, v):
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v

    def select(self, index):
        self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)

    def reserve(self, capacity):
        pass


class Recording:
    """A decoder wrapper that keeps every step's logits; `reserve=False` hides the decoder's reserve."""

    def __init__(self, decoder, reserve=True):
        self.decoder, self.logits = decoder, []
        if reserve:
            self.reserve = decoder.reserve

    def step(self, ids):
        self.logits.append(self.decoder.step(ids))
        return self.logits[-1]

    def reorder(self, index):
        self.decoder.reorder(index)


def _kv(n, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(3, 2, n, 4, generator=g).to(dtype), torch.randn(3, 2, n, 4, generator=g).to(dtype))


def test_cache_grows_by_doubling_and_keeps_what_it_holds():
    cache, ref = KVCache(), CatCache()
    sizes = []
    for step in range(20):
        k, v = _kv(3 if step == 0 else 1, step)
        got, want = cache.append(k, v), ref.append(k, v)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        sizes.append(cache.k.shape[2])
    assert len(cache) == 22 and sorted(set(sizes)) == [3, 6, 12, 24]


def test_reserved_cache_is_allocated_once_and_reorders_in_place():
    cache, ref = KVCache(capacity=22), CatCache()
    cache.append(*_kv(3, 0)), ref.append(*_kv(3, 0))
    k_ptr, v_ptr = cache.k.data_ptr(), cache.v.data_ptr()
    for step in range(1, 20):
        cache.append(*_kv(1, step)), ref.append(*_kv(1, step))
        index = torch.tensor([2, 0, 0]) if step % 2 else torch.tensor([1, 2, 0])
        cache.select(index), ref.select(index)
        assert torch.equal(cache.k[:, :, : len(cache)], ref.k) and torch.equal(cache.v[:, :, : len(cache)], ref.v)
    assert (cache.k.data_ptr(), cache.v.data_ptr(), cache.k.shape[2]) == (k_ptr, v_ptr, 22)


def test_cache_takes_the_dtype_of_its_keys_and_reserve_grows_it():
    cache = KVCache()
    cache.append(*_kv(2, 0, torch.bfloat16))
    assert cache.k.dtype == cache.v.dtype == torch.bfloat16
    cache.reserve(10)
    assert cache.k.shape[2] == 10 and torch.equal(cache.k[:, :, :2], _kv(2, 0, torch.bfloat16)[0])


@pytest.fixture(scope="module")
def blip(tiny_blip_dir):
    model = clipblip.load(tiny_blip_dir)
    with torch.no_grad():
        tokens = model.image_tokens(torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    return model, tokens


def _decode(model, tokens, cfg, prompt, static=False, reserve=True, cat=False):
    decoder = TextDecoder(model, tokens, static=static)
    if cat:
        decoder.caches = [CatCache() for _ in decoder.caches]
    dec = Recording(decoder, reserve)
    with torch.no_grad():
        return generate(dec, prompt.expand(tokens.shape[0], -1), cfg), dec


def _prompts(model):
    t = model.config.text
    return torch.tensor([[t.dec_id]]), torch.tensor([[t.dec_id, 1037, 3861, 1997]])  # [DEC], [DEC] a picture of


# a first batch of 5 images (a bucket of 8, 3 of them padding), a new bucket of 4, then both buckets reused with
# other images and other amounts of padding
_BATCHES = (slice(0, 5), slice(5, 8), slice(1, 4), slice(2, 8))


@pytest.mark.parametrize("num_beams", [1, 3])
def test_logits_bit_identical_to_the_cat_cache(blip, num_beams):
    model, tokens = blip
    tokens = tokens[:5]
    cfg = GenerationConfig(max_new_tokens=20, min_new_tokens=20, num_beams=num_beams)
    for prompt in _prompts(model):
        old_ids, old = _decode(model, tokens, cfg, prompt, cat=True)
        for reserve in (True, False):  # reserved up front, or grown by doubling
            ids, new = _decode(model, tokens, cfg, prompt, reserve=reserve)
            assert ids == old_ids and len(new.logits) == len(old.logits) == 20
            assert all(torch.equal(a, b) for a, b in zip(new.logits, old.logits))
            cache = new.decoder.caches[0]
            assert len(cache) == prompt.shape[1] + 19 and cache.k.shape[2] >= len(cache)
            assert (cache.k.shape[2] == len(cache)) == reserve


def test_cpu_decoding_is_eager_by_default(blip):
    model, tokens = blip
    dec = TextDecoder(model, tokens)
    with torch.no_grad():
        generate(dec, _prompts(model)[0].expand(8, -1), GenerationConfig(max_new_tokens=5, min_new_tokens=5))
    assert dec._graph is None and len(dec.caches[0]) == 5 and dec.caches[0].k.shape[2] == 5


@pytest.fixture
def no_capture(monkeypatch):
    """The static step on the CPU must never reach the CUDA-only capture."""
    def refuse(*_):
        raise AssertionError("CUDA graph capture on the CPU")
    monkeypatch.setattr(_GraphStep, "_capture", refuse)


def _static_against_eager(model, tokens, num_beams, static, tol):
    """Decode every batch of _BATCHES with each prompt both ways; -> the static steps used, in order."""
    cfg = GenerationConfig(max_new_tokens=20, num_beams=num_beams)
    steps = []
    for prompt in _prompts(model):
        prompt = prompt.to(tokens.device)
        for batch in _BATCHES:
            eager_ids, eager = _decode(model, tokens[batch], cfg, prompt)
            ids, fast = _decode(model, tokens[batch], cfg, prompt, static=static)
            assert ids == eager_ids
            for a, b in zip(fast.logits, eager.logits):
                torch.testing.assert_close(a, b, rtol=tol, atol=tol)
            assert fast.decoder._graph is not None and len(fast.decoder.caches[0]) == 0
            steps.append(fast.decoder._graph)
            del fast  # the decoder dies and gives its step back to the pool
    return steps


@pytest.mark.parametrize("num_beams", [1, 3])
def test_static_step_equals_eager_on_cpu(blip, num_beams, no_capture):
    model, tokens = blip
    _GRAPHS.pop(model, None)
    steps = _static_against_eager(model, tokens, num_beams, True, 1e-4)
    # two buckets (8 and 4 images), each made once and reused by every later batch and prompt of its size
    assert [steps.index(s) for s in steps] == [0, 1, 1, 0] * 2
    assert sorted(key[:3] for key in _GRAPHS[model]) == [(4, num_beams, 32), (8, num_beams, 32)]


def test_a_reused_static_step_forgets_the_last_batch(blip, no_capture):
    model, tokens = blip
    _GRAPHS.pop(model, None)
    cfg, prompt = GenerationConfig(max_new_tokens=8), _prompts(model)[0]
    _, first = _decode(model, tokens[:3], cfg, prompt, static=True)
    step = first.decoder._graph
    del first
    for cache in step.caches:  # what a batch that overflowed (bf16) or read NaN pixels would leave behind
        cache.k.fill_(float("nan")), cache.v.fill_(float("nan"))
    ids, again = _decode(model, tokens[3:6], cfg, prompt, static=True)
    assert again.decoder._graph is step and ids == _decode(model, tokens[3:6], cfg, prompt)[0]


def test_static_step_masks_question_padding(blip, no_capture):
    model, tokens = blip  # VQA: the decoder attends to question states whose padding is masked
    tokens = tokens[:5]
    keep = torch.ones(tokens.shape[:2], dtype=torch.bool)
    keep[1, 7:] = keep[3, 4:] = False
    cfg = GenerationConfig(max_new_tokens=12, num_beams=3)
    prompt = _prompts(model)[0].expand(5, -1)
    with torch.no_grad():
        eager = generate(TextDecoder(model, tokens, keep), prompt, cfg)
        assert generate(TextDecoder(model, tokens, keep, static=True), prompt, cfg) == eager
        assert generate(TextDecoder(model, tokens), prompt, cfg) != eager  # the mask does matter


def test_static_step_refuses_to_run_past_its_slots(blip, no_capture):
    model, tokens = blip
    dec = TextDecoder(model, tokens[:1], static=True)
    dec.reserve(3)
    ids = torch.tensor([[model.config.text.dec_id]])
    with torch.no_grad():
        for _ in range(32):  # 3 rounded up to the bucket of 32 slots
            dec.step(ids)
        with pytest.raises(ClipBlipError, match="past 32 tokens"):
            dec.step(ids)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cuda_graph_captions_equal_eager(tiny_blip_dir, num_beams):
    model = clipblip.load(tiny_blip_dir, device="cuda", precision="fp32")
    with torch.no_grad():
        tokens = model.image_tokens(torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)).cuda())
    steps = _static_against_eager(model, tokens, num_beams, None, 1e-4)  # None: the default, graphs on CUDA
    assert all(s.graph is not None for s in steps) and len(set(map(id, steps))) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_in_bf16(tiny_blip_dir):
    model = clipblip.load(tiny_blip_dir, device="cuda", precision="bf16")
    with torch.no_grad():
        tokens = model.image_tokens(torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)).cuda())
    cfg = GenerationConfig(max_new_tokens=20, min_new_tokens=20, num_beams=3)
    ids, dec = _decode(model, tokens, cfg, _prompts(model)[1].cuda(), static=None)
    assert [len(row) for row in ids] == [20] * 3 and dec.decoder._graph.graph is not None
    assert dec.decoder._graph.caches[0].k.dtype == torch.bfloat16 and dec.logits[-1].dtype == torch.float32
