"""The cost model of `clipblip compare` (eval/cost.py) on tiny random models: its schema, FLOPs against a count
by hand, peak memory against known allocations, and the ITM-reranked query's order. No timing is asserted."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipblip.errors import ClipBlipError
from clipblip.eval import cost

COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
TEXTS = ["a red circle", "a small green square above a large blue triangle on the left", "two small blue crosses"]
MEDIAN = TEXTS[2]  # of the token counts


@pytest.fixture(scope="module")
def images():
    return [Image.new("RGB", (40 + 5 * i, 36), c) for i, c in enumerate(COLOURS)]


def _timing(t: dict, repeat: int) -> None:
    assert t["n"] == repeat == len(t["runs"]) and 0 < t["min"] <= t["median"] <= t["max"]


@pytest.mark.parametrize("family", ["clip", "blip"])
def test_schema(family, tiny_clip, tiny_blip, images):
    model, itm = (tiny_clip, False) if family == "clip" else (tiny_blip, True)
    out = cost.measure(model, images, TEXTS, itm=itm, sizes=(50, 300), repeat=2)
    params = list(model.parameters())
    assert out["params"] == sum(p.numel() for p in params) and out["param_bytes"] == 4 * out["params"]  # fp32
    assert out["peak_activation_mb"] > 0
    assert set(out["flops"]) == ({"image", "text", "itm_pair", "pair"} if itm else {"image", "text", "pair"})
    f = out["flops"]
    assert f["pair"] == f["image"] + (f["itm_pair"] if itm else f["text"])
    assert all(isinstance(v, int) and v > 0 for v in out["flops"].values())
    assert out["flops"] == cost.flops(model, model.preprocess(images), MEDIAN, itm)  # the median caption's
    _timing(out["encode_image"], 2)
    _timing(out["encode_text"], 2)
    assert set(out["query"]) == {"50", "300"}
    for row in out["query"].values():
        assert set(row) == ({"itc", "itm_16", "itm_128"} if itm else {"itc"})
        for t in row.values():
            _timing(t, 2)
    assert set(out["pair"]) == ({"itc", "itm"} if itm else {"itc"})
    for t in out["pair"].values():
        _timing(t, 2)


def test_itm_needs_blip(tiny_clip, images):
    with pytest.raises(ClipBlipError, match="BLIP"):
        cost.measure(tiny_clip, images, TEXTS, itm=True)


def test_image_flops_by_hand(tiny_clip):
    # tiny_clip_dir's ViT: 32x32 pixels, 8x8 patches -> 16 patches + class token = L 17 tokens of W 32, 4 heads,
    # MLP 64, 2 blocks, projection to 16. FLOPs = 2 per multiply-add:
    #   patch embedding (conv): 16 patches x 32 outputs x (3 x 8 x 8) inputs x 2            = 196,608
    #   block 1 (all tokens): qkv 2*17*32*96 = 104,448; Q K^T and weights V 2 x 2*17*17*32 = 36,992;
    #                         out proj 2*17*32*32 = 34,816; MLP 2 x 2*17*32*64 = 139,264     = 315,520
    #   block 2 (the class token alone leaves it): q 2*32*32 = 2,048; kv 2*17*32*64 = 69,632;
    #     attention 2 x 2*1*17*32 = 2,176; out proj 2,048; MLP 2 x 2*32*64 = 8,192             =  84,096
    #   projection 2*32*16                                                                     =   1,024
    px = tiny_clip.preprocess([Image.new("RGB", (32, 32), "red")])
    assert cost.flops(tiny_clip, px, "a red circle", itm=False)["image"] == 196_608 + 315_520 + 84_096 + 1_024


def test_text_and_itm_flops_grow_with_length(tiny_blip):
    px = tiny_blip.preprocess([Image.new("RGB", (32, 32), "red")])
    short = cost.flops(tiny_blip, px, "a red circle", itm=True)
    long = cost.flops(tiny_blip, px, "a red circle above a large blue square on the left of two crosses", itm=True)
    assert short["image"] == long["image"]
    assert long["text"] > short["text"] and long["itm_pair"] > short["itm_pair"] > 0


def test_peak_bytes_finds_a_known_allocation():
    mib = 2**20

    def work():
        a = torch.ones(8 * mib, dtype=torch.uint8)
        del a
        b = torch.ones(6 * mib, dtype=torch.uint8)  # after a's free: the peak stays a's 8 MiB (not 14)
        return b

    assert cost.peak_bytes(work, "cpu") == pytest.approx(8 * mib, abs=mib // 4)


def test_peak_activation_grows_with_the_batch(tiny_blip, images):
    px = tiny_blip.preprocess(images)
    small = cost.activation_bytes(tiny_blip, px, TEXTS, itm=True, batch=4)
    large = cost.activation_bytes(tiny_blip, px, TEXTS, itm=True, batch=32)
    assert 0 < small < large


def test_itm_query_is_ordered_and_scored_as_itm_plus_itc(tiny_blip, images):
    px = tiny_blip.preprocess(images)
    with torch.inference_mode():
        feats = F.normalize(tiny_blip.encode_image(px), dim=-1)
        tokens = tiny_blip.image_tokens(px)
    gallery = feats[torch.arange(300) % len(feats)]
    text = TEXTS[1]
    got = cost.query(tiny_blip, text, gallery, tokens, k=128, top=128)
    rows, scores = [r for r, _ in got], [s for _, s in got]
    assert len(got) == 128 and len(set(rows)) == 128 and scores == sorted(scores, reverse=True)
    with torch.inference_mode():
        q = F.normalize(tiny_blip.encode_text(tiny_blip.tokenize([text])), dim=-1)[0]
        sims = gallery @ q
        assert set(rows) == set(sims.topk(128).indices.tolist())  # the rerank keeps the ITC shortlist
        ids = tiny_blip.tokenize([text], first="enc")
        r = torch.tensor(rows[:5])
        want = tiny_blip.itm_logits(ids.expand(5, -1), tiny_blip.image_kv(tokens[r % len(tokens)]))[:, 1] + sims[r]
    assert scores[:5] == pytest.approx(want.tolist(), abs=1e-4)
