"""Decoding: hand-worked greedy and beam search on a bigram table, token parity with transformers' generate on tiny
random GPT-2s (ids and number of decoder steps), and the properties of nucleus sampling."""

import itertools

import pytest
import torch

from clipblip.errors import ClipBlipError
from clipblip.generate import GenerationConfig, generate

# --- a decoder whose next-token log-probs depend only on the last token: beam search by hand -----------------------
PAD, S, A, B, C, EOS = range(6)
_BIGRAM = {  # last token -> probabilities of [pad, S, A, B, C, eos]; no ties among the likely ones
    S: [1e-4, 2e-4, 0.5, 0.4, 0.0994, 3e-4],
    A: [0.0, 0.0, 0.35, 0.3, 0.25, 0.1],
    B: [0.0, 0.0, 0.06, 0.04, 0.0, 0.9],
    C: [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    EOS: [0.1, 0.1, 0.1, 0.1, 0.5, 0.1],  # never used to choose a token: rows that ended are given pad
}


class TableDecoder:
    """Logits = log of the bigram row of each cache row's last token; the cache is the token history itself."""

    def __init__(self):
        table = torch.full((6, 6), 1 / 6)
        for tok, probs in _BIGRAM.items():
            table[tok] = torch.tensor(probs)
        self.table = table.clamp_min(1e-12).log()  # rows are normalised, so log_softmax leaves them as they are
        self.rows = None
        self.steps = 0

    def step(self, ids):
        self.rows = ids if self.rows is None else torch.cat([self.rows, ids], 1)
        self.steps += 1
        return self.table[self.rows[:, -1]]

    def reorder(self, index):
        self.rows = self.rows[index]


def _run(prompt, **kw):
    dec = TableDecoder()
    out = generate(dec, torch.tensor(prompt), GenerationConfig(eos_id=EOS, pad_id=PAD, **kw))
    return out, dec.steps


def test_greedy_by_hand():
    # S->A (.5), then A->A (.35) forever: greedy never sees that S->B->eos is the likelier sentence
    assert _run([[S]], max_new_tokens=4) == ([[A, A, A, A]], 4)
    # a row that ends early gets pad and does not stop the other; eos is not returned
    assert _run([[S, B], [S, S]], max_new_tokens=3) == ([[], [A, A, A]], 3)
    # stops as soon as every row has ended
    assert _run([[S, B], [B, B]], max_new_tokens=5) == ([[], []], 1)


def test_greedy_feeds_pad_to_rows_that_ended():
    dec = TableDecoder()
    generate(dec, torch.tensor([[S, B], [S, S]]), GenerationConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD))
    # the last token chosen is never fed back, so the cache holds prompt + 3 tokens
    assert dec.rows.tolist() == [[S, B, EOS, PAD, PAD], [S, S, A, A, A]]


def test_greedy_min_new_tokens_and_repetition_penalty_by_hand():
    # eos is barred for the first new token, so B -> A (.06) instead of B -> eos (.9)
    assert _run([[S, B]], max_new_tokens=3, min_new_tokens=1)[0] == [[A, A, A]]
    # after S A, log .35 for A becomes log(.35) * 1.3 = -1.36 < log .3 = -1.20, so B; then B -> eos
    assert _run([[S]], max_new_tokens=5, repetition_penalty=1.3)[0] == [[A, B]]


def test_beam_search_by_hand():
    # k=2. Step 1 keeps A (-0.69), B (-0.92). Step 2 files B.eos = log(.4*.9)/2 = -0.51, runs AA (-1.74), AB (-1.90).
    # Step 3 files AB.eos = log(.5*.3*.9)/3 = -0.67; both slots full and the best running beam AAA scores
    # log(.5*.35*.35)/3 = -0.93 < -0.67, so the heuristic stops after 3 steps and B wins.
    assert _run([[S]], max_new_tokens=6, num_beams=2) == ([[B]], 3)
    # length_penalty 2 divides by length squared: B.eos = -1.02/4 = -0.26 < AB.eos = -2.00/9 = -0.22
    assert _run([[S]], max_new_tokens=6, num_beams=2, length_penalty=2.0) == ([[A, B]], 3)
    # at max length the top k candidates are filed, eos or not: B.eos (-1.02/2) beats AA (-1.74/2)
    assert _run([[S]], max_new_tokens=2, num_beams=2) == ([[B]], 2)
    assert _run([[S]], max_new_tokens=1, num_beams=2) == ([[A]], 1)
    # inputs are independent: the batch gives each input's own answer
    assert _run([[S], [C], [S]], max_new_tokens=6, num_beams=2, length_penalty=2.0)[0] == [[A, B], [], [A, B]]


class ReservingDecoder(TableDecoder):
    def reserve(self, length):
        self.reserved = length


@pytest.mark.parametrize("num_beams", [1, 2])
def test_the_decoder_is_told_the_longest_row_before_the_first_step(num_beams):
    dec = ReservingDecoder()
    cfg = GenerationConfig(max_new_tokens=5, min_new_tokens=5, num_beams=num_beams, eos_id=EOS, pad_id=PAD)
    out = generate(dec, torch.tensor([[S, A]]), cfg)
    # prompt + every new token but the last, which is returned without being fed: exactly what the rows held
    assert len(out[0]) == 5 and dec.reserved == 2 + 5 - 1 == dec.rows.shape[1]


def test_max_new_tokens_zero_never_calls_the_decoder():
    assert _run([[S], [A]], max_new_tokens=0) == ([[], []], 0)


def test_config_decides_sampling_and_rejects_nonsense():
    assert not GenerationConfig().sampling
    assert GenerationConfig(top_p=0.9).sampling and GenerationConfig(temperature=0.7).sampling
    assert not GenerationConfig(top_p=0.9, do_sample=False).sampling
    for bad in ({"num_beams": 0}, {"temperature": 0.0}, {"top_p": 1.5}, {"repetition_penalty": 0.0}):
        with pytest.raises(ClipBlipError):
            GenerationConfig(**bad)


# --- parity with transformers on tiny random GPT-2s ---------------------------------------------------------------
V = 64


class HFDecoder:
    """A transformers causal LM as a Decoder: its DynamicCache is the KV cache, reordered in place for beams."""

    def __init__(self, model):
        self.model, self.cache = model, None

    @torch.no_grad()
    def step(self, ids):
        out = self.model(input_ids=ids, cache=self.cache, use_cache=True)
        self.cache = out.cache
        return out.logits[:, -1]

    def reorder(self, index):
        self.cache.reorder_cache(index)


def _greedy_unrolled(model, prompt, n):
    ids = prompt
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], 1)
    return ids[:, prompt.shape[1]:]


@pytest.fixture(scope="module")
def tiny_lms():
    """Three random GPT-2s, each with prompts for batch 1 and 3 and an eos id the model actually likes to emit."""
    from transformers import GPT2Config, GPT2LMHeadModel

    lms = []
    for seed in range(3):
        torch.manual_seed(seed)
        # a wide init makes the next-token distributions peaked, so eos ends hypotheses at varied lengths
        cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=V, n_positions=64, initializer_range=0.3,
                         bos_token_id=1, eos_token_id=2)
        model = GPT2LMHeadModel(cfg).eval()
        prompts = [torch.randint(1, V, (batch, 3)) for batch in (1, 3)]
        eos = _greedy_unrolled(model, prompts[1], 12).flatten().bincount().argmax().item()
        lms.append((model, prompts, eos))
    return lms


def _hf_generate(model, prompt, cfg):
    """transformers' ids for cfg (prompt, eos and what follows it stripped) and its number of forward passes."""
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                             max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens,
                             num_beams=cfg.num_beams, length_penalty=cfg.length_penalty,
                             repetition_penalty=cfg.repetition_penalty, do_sample=False,
                             eos_token_id=cfg.eos_id, pad_token_id=cfg.pad_id)
    finally:
        hook.remove()
    rows = out[:, prompt.shape[1]:].tolist()
    return [r[: r.index(cfg.eos_id)] if cfg.eos_id in r else r for r in rows], len(calls)


def _ours(model, prompt, cfg):
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        return generate(HFDecoder(model), prompt, cfg), len(calls)
    finally:
        hook.remove()


# every setting combination once per beam width, spread over the (model, batch) pairs to keep the test quick
_SETTINGS = list(itertools.product((0.5, 1.0, 2.0), (1.0, 1.3), (0, 5), (4, 20)))  # length_p, rep_p, min_new, max_new


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("num_beams", [1, 2, 3, 5])
def test_token_identical_to_transformers_generate(tiny_lms, num_beams):
    settings = _SETTINGS if num_beams > 1 else [s for s in _SETTINGS if s[0] == 1.0]  # greedy has no length penalty
    pairs = [(lm, prompt) for lm in tiny_lms for prompt in lm[1]]
    ended_early = ran_to_max = 0
    for i, (length_p, rep_p, min_new, max_new) in enumerate(settings):
        (model, _, eos), prompt = pairs[i % len(pairs)]
        cfg = GenerationConfig(max_new_tokens=max_new, min_new_tokens=min_new, num_beams=num_beams,
                               length_penalty=length_p, repetition_penalty=rep_p, eos_id=eos, pad_id=0)
        ours, ref = _ours(model, prompt, cfg), _hf_generate(model, prompt, cfg)
        assert ours == ref, f"{cfg} prompt={prompt.tolist()}: ours (ids, steps) {ours} != transformers {ref}"
        ended_early += sum(min_new <= len(r) < max_new for r in ours[0])
        ran_to_max += sum(len(r) == max_new for r in ours[0])
    # both ends of a hypothesis were exercised: eos before the limit, and the limit itself
    assert ended_early >= 3 and ran_to_max >= 3, (ended_early, ran_to_max)


# --- sampling ----------------------------------------------------------------------------------------------------
class RecordingDecoder(HFDecoder):
    def __init__(self, model):
        super().__init__(model)
        self.logits = []

    def step(self, ids):
        out = super().step(ids)
        self.logits.append(out)
        return out


def test_sampling_is_reproducible_by_seed(tiny_lms):
    model, (_, prompt), eos = tiny_lms[0]

    def draw(seed):
        return generate(HFDecoder(model), prompt, GenerationConfig(
            max_new_tokens=15, top_p=0.9, temperature=1.5, seed=seed, eos_id=eos))

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)

    def beams(seed):
        return generate(HFDecoder(model), prompt, GenerationConfig(
            max_new_tokens=10, num_beams=3, temperature=2.0, seed=seed, eos_id=eos))

    assert beams(3) == beams(3) and len(beams(3)) == 3


def test_tiny_top_p_is_greedy(tiny_lms):
    for model, (_, prompt), eos in tiny_lms:
        for rep_p in (1.0, 1.3):
            greedy = generate(HFDecoder(model), prompt, GenerationConfig(max_new_tokens=12, repetition_penalty=rep_p,
                                                                          eos_id=eos))
            nucleus = GenerationConfig(max_new_tokens=12, repetition_penalty=rep_p, top_p=1e-6, seed=0, eos_id=eos)
            assert generate(HFDecoder(model), prompt, nucleus) == greedy


def test_sampled_tokens_lie_in_the_nucleus(tiny_lms):
    top_p, temperature = 0.6, 0.8
    off_argmax = 0
    for model, (_, prompt), eos in tiny_lms:
        dec = RecordingDecoder(model)
        cfg = GenerationConfig(max_new_tokens=20, top_p=top_p, temperature=temperature, seed=1, eos_id=eos)
        for row, tokens in enumerate(generate(dec, prompt, cfg)):
            for logits, tok in zip(dec.logits, tokens):
                probs = (logits[row] / temperature).softmax(-1)
                # the nucleus holds the most likely tokens until their mass reaches top_p
                more_likely = probs[probs > probs[tok]].sum().item()
                assert more_likely < top_p + 1e-6, (row, tok, more_likely)
                off_argmax += int(tok != probs.argmax().item())
    assert off_argmax > 0  # it did sample, not just take the argmax
