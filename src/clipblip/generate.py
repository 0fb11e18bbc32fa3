"""Decoding for the BLIP text decoder: greedy, beam search and nucleus sampling over an abstract step function.

The model side is a `Decoder` (one `step` per token over its own KV cache, plus `reorder` for beam search), so the
algorithms here know nothing of BLIP. Greedy and beam search reproduce transformers' `generate` (v5: `_sample` and
`_beam_search` with `early_stopping=False`) token for token; the tensor ops mirror theirs one to one, because the
same float32 ops in the same order are what make the scores, and hence top-k ties and near-ties, come out equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .errors import ClipBlipError

# transformers' "minus infinity" for beams that must not win a top-k; finite, so sums with it stay ordered
_NEG = -1.0e9


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 30
    min_new_tokens: int = 0  # eos is forbidden (logit -inf) until this many new tokens exist
    num_beams: int = 1
    length_penalty: float = 1.0  # beam search: final score = sum logprobs / (new length incl. eos) ** length_penalty
    top_p: float | None = None  # nucleus sampling when set (unless do_sample=False)
    temperature: float = 1.0
    repetition_penalty: float = 1.0  # CTRL: for every id already in the row (prompt included), x<0 -> x*p, else x/p
    seed: int | None = None  # sampling: a torch.Generator seeded with it, so results are reproducible
    eos_id: int = 102
    pad_id: int = 0
    do_sample: bool | None = None  # None: sample iff top_p is set or temperature != 1.0
    cuda_graphs: bool = False  # BLIP on CUDA: replay each step as a CUDA graph (models.blip.TextDecoder)

    def __post_init__(self):
        if self.max_new_tokens < 0 or self.min_new_tokens < 0:
            raise ClipBlipError("max_new_tokens and min_new_tokens must be >= 0")
        if self.num_beams < 1:
            raise ClipBlipError(f"num_beams must be >= 1, got {self.num_beams}")
        if not self.temperature > 0:
            raise ClipBlipError(f"temperature must be > 0 (use do_sample=False for greedy), got {self.temperature}")
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
            raise ClipBlipError(f"top_p must be in [0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ClipBlipError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def sampling(self) -> bool:
        if self.do_sample is not None:
            return self.do_sample
        return self.top_p is not None or self.temperature != 1.0


class Decoder(Protocol):
    """What the algorithms step. A decoder may also have `reserve(length)`: called once before the first step with
    the most tokens a row will hold (prompt included), so that its cache is allocated once."""

    def step(self, ids: torch.LongTensor) -> torch.Tensor:
        """ids [N, l]: the new tokens of each row (the whole prompt first, then one per call) -> logits [N, V]."""
        ...

    def reorder(self, index: torch.LongTensor) -> None:
        """Beam search: keep cache rows `index` ([N]) in that order; rows only move within one input's beams."""
        ...


def generate(decoder: Decoder, prompt: torch.LongTensor, cfg: GenerationConfig) -> list[list[int]]:
    """prompt [B, L0] -> for each input the new token ids, up to and excluding eos.

    With num_beams = k > 1 the decoder sees B*k rows (input b owns rows b*k .. b*k+k-1), starting from the prompt
    repeated with repeat_interleave; the best finished hypothesis of each input is returned.
    """
    if prompt.dim() != 2:
        raise ValueError(f"prompt must be [batch, length], got shape {tuple(prompt.shape)}")
    if cfg.max_new_tokens == 0:
        return [[] for _ in range(prompt.shape[0])]
    reserve = getattr(decoder, "reserve", None)
    if reserve is not None:  # the last new token is returned, never fed back
        reserve(prompt.shape[1] + cfg.max_new_tokens - 1)
    generator = None
    if cfg.sampling and cfg.seed is not None:
        generator = torch.Generator(device=prompt.device).manual_seed(cfg.seed)
    if cfg.num_beams == 1:
        new = _greedy_or_sample(decoder, prompt, cfg, generator)
    else:
        new = _beam_search(decoder, prompt, cfg, generator)
    return [_cut_at_eos(row, cfg.eos_id) for row in new.tolist()]


def _cut_at_eos(row: list[int], eos: int) -> list[int]:
    # rows are padded after eos (greedy) or hold fill values after it (beam); a row without eos ran to the end
    return row[: row.index(eos)] if eos in row else row


def _process(scores: torch.Tensor, history: torch.Tensor, n_new: int, cfg: GenerationConfig,
             min_keep: int) -> torch.Tensor:
    """transformers' logits-processor list in its order: repetition, min-new-tokens, then (sampling) temperature, top-p.

    scores [N, V] are raw logits for greedy/sampling but log-probs for beam search, as in transformers.
    history [N, l] is every id of each row so far, prompt included.
    """
    if cfg.repetition_penalty != 1.0:
        seen = torch.gather(scores, 1, history)
        seen = torch.where(seen < 0, seen * cfg.repetition_penalty, seen / cfg.repetition_penalty)
        scores = scores.scatter(1, history, seen)
    if n_new < cfg.min_new_tokens:
        scores = scores.clone()
        scores[:, cfg.eos_id] = -float("inf")
    if cfg.sampling:
        if cfg.temperature != 1.0:
            scores = scores / cfg.temperature
        if cfg.top_p is not None and cfg.top_p < 1.0:
            scores = _top_p(scores, cfg.top_p, min_keep)
    return scores


def _top_p(scores: torch.Tensor, top_p: float, min_keep: int) -> torch.Tensor:
    # ascending sort: drop the low tail whose total mass is <= 1 - top_p, always keeping the min_keep best
    sorted_scores, order = torch.sort(scores, descending=False)
    tail_mass = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = tail_mass <= (1 - top_p)
    drop_sorted[..., -min_keep:] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, -float("inf"))


def _greedy_or_sample(decoder: Decoder, prompt: torch.Tensor, cfg: GenerationConfig,
                      generator: torch.Generator | None) -> torch.Tensor:
    """-> [B, steps] new ids; rows that met eos are fed pad afterwards and stop counting, as in `_sample`."""
    n, l0 = prompt.shape
    ids = prompt.new_full((n, l0 + cfg.max_new_tokens), cfg.pad_id)
    ids[:, :l0] = prompt
    unfinished = torch.ones(n, dtype=torch.bool, device=prompt.device)
    logits = decoder.step(prompt)
    for t in range(cfg.max_new_tokens):
        scores = _process(logits.float(), ids[:, : l0 + t], t, cfg, min_keep=1)
        if cfg.sampling:
            nxt = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            nxt = torch.argmax(scores, dim=-1)
        nxt = torch.where(unfinished, nxt, cfg.pad_id)
        ids[:, l0 + t] = nxt
        unfinished &= nxt != cfg.eos_id
        if t + 1 == cfg.max_new_tokens or not unfinished.any():
            return ids[:, l0 : l0 + t + 1]
        logits = decoder.step(nxt[:, None])
    raise AssertionError("unreachable: the loop returns at its last step")


@dataclass
class _Beams:
    """Beam-search state per input b: k running beams and the k best finished hypotheses, each a full-length row."""
    run_ids: torch.Tensor  # [B, k, L0 + T] prompt + tokens so far (fill after)
    run_scores: torch.Tensor  # [B, k] summed log-probs; beams 1.. start at -1e9 so step one expands beam 0 only
    fin_ids: torch.Tensor  # [B, k, L0 + T]
    fin_scores: torch.Tensor  # [B, k] length-penalised; -1e9 for empty slots
    fin_done: torch.Tensor  # [B, k] bool: slot holds a real finished hypothesis
    open: torch.Tensor  # [B, 1] bool: the early-stop heuristic still lets input b improve


def _beam_search(decoder: Decoder, prompt: torch.Tensor, cfg: GenerationConfig,
                 generator: torch.Generator | None) -> torch.Tensor:
    """transformers' `_beam_search` with early_stopping=False, one eos id -> [B, T] ids of each input's best."""
    b, l0 = prompt.shape
    k, dev = cfg.num_beams, prompt.device
    run_ids = prompt.new_full((b, k, l0 + cfg.max_new_tokens), cfg.pad_id)
    run_ids[:, :, :l0] = prompt[:, None, :]
    run_scores = torch.zeros(b, k, device=dev)
    run_scores[:, 1:] = _NEG
    st = _Beams(run_ids, run_scores, run_ids.clone(), torch.full((b, k), _NEG, device=dev),
                torch.zeros(b, k, dtype=torch.bool, device=dev), torch.ones(b, 1, dtype=torch.bool, device=dev))
    logits = decoder.step(prompt.repeat_interleave(k, dim=0))
    for t in range(cfg.max_new_tokens):
        src = _beam_step(st, logits, l0 + t, cfg, generator)
        if _beam_search_done(st, src.hits, l0 + t + 1, l0, cfg.length_penalty):
            break
        offset = torch.arange(b, device=dev)[:, None] * k
        decoder.reorder((src.beam + offset).reshape(-1))
        logits = decoder.step(st.run_ids[:, :, l0 + t].reshape(-1, 1))
    return st.fin_ids[:, 0, l0:]


@dataclass
class _StepResult:
    beam: torch.Tensor  # [B, k] the beam (within its input) each new running beam extends: the cache reorder
    hits: torch.Tensor  # [B, 2k] which candidates finished (eos, or max length reached)


def _beam_step(st: _Beams, logits: torch.Tensor, cur_len: int, cfg: GenerationConfig,
               generator: torch.Generator | None) -> _StepResult:
    """One token for every beam: pick 2k candidates, keep the k best unfinished, file the finished ones."""
    b, k, max_len = st.run_ids.shape
    l0 = max_len - cfg.max_new_tokens
    # transformers applies the processors to log-probs here (not to logits as in greedy), without renormalising
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    log_probs = _process(log_probs, st.run_ids[:, :, :cur_len].reshape(b * k, cur_len), cur_len - l0, cfg,
                         min_keep=2)
    vocab = log_probs.shape[-1]
    log_probs = (log_probs.view(b, k, vocab) + st.run_scores[:, :, None]).reshape(b, k * vocab)

    # 2k candidates: even if k of them end in eos (at most one per beam), k can still run
    n_cand = 2 * k
    if cfg.sampling:
        cand = torch.multinomial(log_probs.softmax(dim=-1), n_cand, generator=generator)
        cand_lp, order = torch.gather(log_probs, 1, cand).sort(dim=-1, descending=True)
        cand = cand.gather(-1, order)
    else:
        cand_lp, cand = torch.topk(log_probs, k=n_cand)
    cand_beam, cand_tok = cand // vocab, cand % vocab
    cand_ids = _gather(st.run_ids, cand_beam)
    cand_ids[:, :, cur_len] = cand_tok
    hits = (cand_tok == cfg.eos_id) | (cur_len + 1 >= max_len)

    # running beams: the best k candidates that did not finish
    run_lp = cand_lp + hits.to(torch.float32) * _NEG
    keep = torch.topk(run_lp, k=k)[1]
    st.run_ids, st.run_scores = _gather(cand_ids, keep), _gather(run_lp, keep)

    # finished: only the top k candidates may file a hypothesis (the rest exist to keep k beams running)
    just_done = hits.clone()
    just_done[:, k:] = False
    fin_lp = cand_lp / ((cur_len + 1 - l0) ** cfg.length_penalty)
    fin_lp += (~st.open).to(torch.float32) * _NEG
    fin_lp += (~just_done) * _NEG
    merged = torch.topk(torch.cat((st.fin_scores, fin_lp), dim=1), k=k)[1]
    st.fin_ids = _gather(torch.cat((st.fin_ids, cand_ids), dim=1), merged)
    st.fin_scores = _gather(torch.cat((st.fin_scores, fin_lp), dim=1), merged)
    st.fin_done = _gather(torch.cat((st.fin_done, just_done), dim=1), merged)
    return _StepResult(beam=_gather(cand_beam, keep), hits=hits)


def _beam_search_done(st: _Beams, hits: torch.Tensor, new_len: int, l0: int, length_penalty: float) -> bool:
    """Update the early-stop heuristic; done when no input can improve or every candidate hit a stop."""
    # early_stopping=False: assume the best running beam would finish at its current length
    best_running = st.run_scores[:, :1] / ((new_len - l0) ** length_penalty)
    worst_finished = torch.where(st.fin_done, torch.min(st.fin_scores, dim=1, keepdim=True)[0], _NEG)
    st.open = st.open & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
    return not bool(st.open.any()) or bool(hits.all())


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, n, ...], index [B, m] -> [B, m, ...]: pick beams per input (transformers' `_gather_beams`)."""
    while index.dim() < x.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(x, index, dim=1)
