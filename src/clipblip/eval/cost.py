"""What a model costs as a user meets it (issue 15): parameters, peak activation memory and FLOPs; the time to
encode an image or a text; the latency of one text-to-image query over a gallery of precomputed features (CLIP or
BLIP ITC, and BLIP ITC + an ITM rerank of the top k); and the cost of scoring one new (image, text) pair from raw
inputs. Every timing is `stats.timed`'s summary, in seconds."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ClipBlipError
from ..stats import timed

BATCH = 32  # images, texts (and ITM pairs) in the forward whose peak activation memory is measured
TOP = 10  # results a query returns
_CPU_MEMORY = ("CPU", "MKLDNN", "IDEEP")  # the profiler's device types of CPU allocations (as torch's parser reads)


def _sdpa_flops(q_shape, k_shape, v_shape, *args, **kwargs) -> int:
    """Q @ K^T and weights @ V of scaled_dot_product_attention, as FlopCounterMode counts its CUDA kernels."""
    b, h, s_q, d = q_shape
    return 2 * b * h * s_q * k_shape[-2] * (d + v_shape[-1])


# FlopCounterMode has no formula for the CPU attention kernel (it counted 0); causal masks count in full, as on CUDA
_CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def count_flops(fn) -> int:
    """The FLOPs of fn() by torch.utils.flop_counter.FlopCounterMode: matrix products, convolutions and attention
    (2 per multiply-add; norms, activations and softmax not counted), the CPU attention kernel included.
    Layers quantized to int8 are not counted."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_SDPA) as counter:
        fn()
    return int(counter.get_total_flops())


@contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null: kineto prints the profiler's start and stop there, and c10 warns of a free
    of memory allocated before profiling began; neither means anything here. Exceptions still propagate."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def peak_bytes(fn, device) -> int | None:
    """The peak of the memory fn() allocates on `device` beyond what was allocated before it (its outputs
    included while they live); None on a device other than the CPU or CUDA. CUDA: max_memory_allocated after
    reset_peak_memory_stats, less memory_allocated before. CPU: the running sum of the allocations and frees that
    torch.profiler records (profile_memory=True; a free of memory allocated before fn is not recorded)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        return None
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = [e for e in prof.profiler.kineto_results.events()
               if e.name() == "[memory]" and e.device_type().name in _CPU_MEMORY]
    peak = total = 0
    for e in sorted(records, key=lambda e: e.start_ns()):
        total += e.nbytes()
        peak = max(peak, total)
    return peak


def activation_bytes(model, pixels: torch.Tensor, texts: list[str], *, itm: bool, batch: int = BATCH) -> int | None:
    """`peak_bytes` of one forward over `batch` images (rows of `pixels`, preprocessed, repeated if fewer) and
    `batch` texts (repeated likewise), plus with `itm` the ITM of each text with its image, the ITC image
    features then coming from the same tower pass. Inputs are made before the measurement: they are not counted."""
    rows = torch.arange(batch) % len(pixels)
    px = pixels[rows].to(model.device)
    chosen = [texts[i % len(texts)] for i in range(batch)]
    ids = model.tokenize(chosen).to(model.device)
    enc = model.tokenize(chosen, first="enc").to(model.device) if itm else None

    def forward():
        if enc is None:
            return model.encode_image(px), model.encode_text(ids)
        tokens = model.image_tokens(px)
        return model.vision_proj(tokens[:, 0]), model.encode_text(ids), model.itm_logits(enc, model.image_kv(tokens))

    with torch.inference_mode():
        return peak_bytes(forward, model.device)


@torch.inference_mode()
def query(model, text: str, gallery: torch.Tensor, tokens: torch.Tensor | None = None, k: int = 0,
          top: int = TOP) -> list[tuple[int, float]]:
    """One text-to-image query: [(gallery row, score)], best first, at most `top`. Encodes the text, scores every
    row of `gallery` (normalized features [N, D] on model.device) by one dot product and keeps the best. With k
    (BLIP), reranks the ITC top k by ITM match logit + ITC similarity (as tasks.itm.rerank_text_to_image), the
    image tokens of gallery row r being tokens[r % len(tokens)]."""
    q = F.normalize(model.encode_text(model.tokenize([text]).to(model.device)), dim=-1)[0]
    sims, rows = (gallery @ q.to(gallery.dtype)).topk(min(k or top, len(gallery)))
    if k:
        ids = model.tokenize([text], first="enc").to(model.device)
        kv = model.image_kv(tokens[rows % len(tokens)])
        sims, order = (model.itm_logits(ids.expand(len(rows), -1), kv)[:, 1] + sims).sort(descending=True)
        rows = rows[order]
    return list(zip(rows[:top].tolist(), sims[:top].tolist()))


def _synced(model, fn):
    """fn, waiting for the device to finish before it returns (CUDA runs asynchronously)."""
    if model.device.type != "cuda":
        return fn
    return lambda: (fn(), torch.cuda.synchronize(model.device))


def _per_item(timing: dict, n: int) -> dict:
    """A batch's timing as a timing per item."""
    return {**timing, **{key: timing[key] / n for key in ("median", "min", "max")},
            "runs": [r / n for r in timing["runs"]]}


def _median_text(model, texts: list[str]) -> str:
    """The text of median token count (the lower median): a typical caption."""
    lengths = (model.tokenize(texts) != model.config.text.pad_id).sum(1)
    return texts[int(lengths.argsort()[(len(texts) - 1) // 2])]


@torch.inference_mode()
def flops(model, pixels: torch.Tensor, text: str, itm: bool) -> dict:
    """{"image", "text", "itm_pair" (itm), "pair"}: `count_flops` of one image (pixels[0]), one text, and one ITM
    pair (the fusion encoder over the text with the image's tokens: their cross-attention keys/values and the ITM
    head included, the image's encoding not); "pair" is what scoring one new pair from raw inputs takes: the image
    and the text encoded (the dot product aside), or with itm the image and one ITM pass."""
    one, dev = pixels[:1].to(model.device), model.device
    out = {"image": count_flops(lambda: model.encode_image(one)),
           "text": count_flops(lambda: model.encode_text(model.tokenize([text]).to(dev)))}
    if itm:
        tokens, ids = model.image_tokens(one), model.tokenize([text], first="enc").to(dev)
        out["itm_pair"] = count_flops(lambda: model.itm_logits(ids, model.image_kv(tokens)))
    out["pair"] = out["image"] + out["itm_pair" if itm else "text"]
    return out


def _pair(model, image, text: str, itm: bool, repeat: int) -> dict:
    """The time to score one new (PIL image, string) pair: preprocess, encode both, one dot product; for ITM:
    preprocess, the image's tokens, tokenize, the ITM match logit."""
    dev = model.device

    def itc():
        img = F.normalize(model.encode_image(model.preprocess([image]).to(dev)), dim=-1)
        return float(img[0] @ F.normalize(model.encode_text(model.tokenize([text]).to(dev)), dim=-1)[0])

    def match():
        kv = model.image_kv(model.image_tokens(model.preprocess([image]).to(dev)))
        return float(model.itm_logits(model.tokenize([text], first="enc").to(dev), kv)[0, 1])

    out = {"itc": timed(itc, repeat=repeat)}
    if itm:
        out["itm"] = timed(match, repeat=repeat)
    return out


def _queries(model, text: str, feats, tokens, sizes, ks, repeat: int) -> dict:
    """{str(N): {"itc": timing, "itm_K": timing per k (with tokens)}} of one query over N tiled gallery rows."""
    out = {}
    for n in sizes:
        gallery = feats[torch.arange(n, device=feats.device) % len(feats)]
        row = {"itc": timed(lambda: query(model, text, gallery), repeat=repeat)}
        for k in ks if tokens is not None else ():
            row[f"itm_{k}"] = timed(lambda k=k: query(model, text, gallery, tokens, k), repeat=repeat)
        out[str(n)] = row
    return out


def _check(model, images: list, texts: list[str], itm: bool) -> None:
    if not images or not texts:
        raise ClipBlipError("measuring a model's cost needs at least one image and one caption")
    if itm and model.family != "blip":
        raise ClipBlipError("ITM costs need a BLIP model; measure a CLIP with itm=False")
    if itm:
        model.require("itm", "measure ITM's cost")


@torch.inference_mode()
def measure(model, images: list, texts: list[str], *, itm: bool, sizes=(1000, 10000), ks=(16, 128),
            repeat: int = 5) -> dict:
    """The cost of `model` on its device, in its precision, from up to 64 PIL `images` and the captions `texts`
    (the queries). Timings: `stats.timed(fn, repeat)` summaries in seconds, after one warm-up run.

    {"params", "param_bytes" (parameters only, each shared one once; buffers not counted), "peak_activation_mb"
    (`activation_bytes` of 32 images + 32 texts (+ their 32 ITM pairs), this model alone; None off CPU and
    CUDA), "flops": {"image", "text" (the caption of median token count), "itm_pair" (itm), "pair"}, "encode_image" and
    "encode_text": per item, the forward alone over a batch of the (up to 64) images or texts, inputs prepared,
    "query": {str(N): {"itc", "itm_K" per K in ks (itm)}}: one query (`query`, the median caption) over a gallery
    of N rows, the images' precomputed features tiled to N rows (and for the rerank their image tokens, row r
    reading image r modulo their number), "pair": {"itc", "itm" (itm)}: one new pair from raw inputs}.
    ITM is BLIP's: with itm=False a BLIP is measured as its ITC side only.
    """
    _check(model, images, texts, itm)
    images, dev = list(images)[:64], model.device
    pixels = model.preprocess(images).to(dev)
    text = _median_text(model, texts)
    ids = model.tokenize(texts[:64]).to(dev)
    params = list(model.parameters())  # each shared (tied) parameter once
    out = {"params": sum(p.numel() for p in params), "param_bytes": sum(p.numel() * p.element_size() for p in params)}
    act = activation_bytes(model, pixels, texts, itm=itm)
    out["peak_activation_mb"] = None if act is None else act / 2**20
    out["flops"] = flops(model, pixels, text, itm)
    out["encode_image"] = _per_item(timed(_synced(model, lambda: model.encode_image(pixels)), repeat), len(pixels))
    out["encode_text"] = _per_item(timed(_synced(model, lambda: model.encode_text(ids)), repeat), len(ids))
    feats = F.normalize(model.encode_image(pixels), dim=-1)
    tokens = model.image_tokens(pixels) if itm else None
    out["query"] = _queries(model, text, feats, tokens, sizes, ks, repeat)
    out["pair"] = _pair(model, images[0], text, itm, repeat)
    return out
