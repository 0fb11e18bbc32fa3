"""The accuracy contract of bf16 and int8 against fp32 (clipblip/eval/precision.py), on the shipped models over the
Shapes test split and on a random BLIP-base-shaped model. Both precisions run on any x86 CPU (slowly where bf16
is not native), so this runs everywhere; bench/bench_precision.py measures the same figures for the README."""

import copy

import pytest
import torch

import clipblip
from clipblip import runtime
from clipblip.data.shapes_eval import records
from clipblip.eval import precision as P

# Scenes. R@1 is judged to 1 point: on 300 scenes a few near-tied rankings flipping either way move it by more
# than that (int8 BLIP ITC: 46.0% -> 44.7%), on 1,000 they even out (30.3% -> 30.9%).
N_RETRIEVAL, N_CAPTIONS, N_VQA = 1000, 300, 100


@pytest.fixture(scope="module")
def scenes():
    return records("test", N_RETRIEVAL, n_objects=1), records("test", N_RETRIEVAL)


@pytest.fixture(scope="module")
def fp32_sides(scenes):
    single, multi = scenes
    clip, blip = (clipblip.load(n, device="cpu", precision="fp32") for n in ("shapes-clip", "shapes-blip"))
    vqa = clipblip.load("shapes-blip-vqa", device="cpu", precision="fp32")
    return {"shapes-clip": P.clip_side(clip, single, multi), "shapes-blip": P.clip_side(blip, single, multi),
            "captions": P.caption_side(blip, multi[:N_CAPTIONS]), "vqa": P.vqa_side(vqa, multi[:N_VQA])}


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_shipped_models_keep_the_contract(precision, scenes, fp32_sides):
    single, multi = scenes
    for name in ("shapes-clip", "shapes-blip"):
        model = clipblip.load(name, device="cpu", precision=precision)
        figures = P.compare_clip(fp32_sides[name], P.clip_side(model, single, multi))
        if name == "shapes-blip":
            figures.update(P.compare_captions(fp32_sides["captions"], P.caption_side(model, multi[:N_CAPTIONS])))
        verdicts = P.verdicts(figures, precision)
        assert all(verdicts.values()), (name, figures, verdicts)
        assert len(verdicts) == (5 if name == "shapes-blip" else 3)
    vqa = clipblip.load("shapes-blip-vqa", device="cpu", precision=precision)
    figures = {"vqa": P.vqa_side(vqa, multi[:N_VQA])["accuracy"], "vqa_fp32": fp32_sides["vqa"]["accuracy"]}
    assert P.verdicts(figures, precision) == {"vqa": True}, figures


def test_the_contract_can_fail():
    """The verdicts are not vacuous: figures outside each tolerance are judged so."""
    bad = {"image_cosine": 0.995, "text_cosine": 0.9999, "zero_shot_agreement": 0.98, "r1_fp32": 0.60, "r1": 0.62,
           "captions_identical": 0.85, "facts_true_fp32": 0.88, "facts_true": 0.86, "vqa": 0.9, "vqa_fp32": 0.92}
    assert not any(P.verdicts(bad, "bf16").values())
    assert P.verdicts(bad, "int8")["embeddings"]  # int8's floor is 0.99


@pytest.fixture(scope="module")
def blip_base():
    from clipblip.config import BertConfig, BlipConfig, VisionConfig
    from clipblip.image import Preprocess
    from clipblip.models import BLIP

    torch.manual_seed(0)
    cfg = BlipConfig(vision=VisionConfig(image_size=224, patch_size=16, width=768, layers=12, heads=12, mlp_dim=3072,
                                         act="gelu", norm_eps=1e-6, norm_pre=False, patch_bias=True, output_dim=None),
                     text=BertConfig(), image=Preprocess(size=224, resize="squash"), embed_dim=256,
                     parts=("encoder", "itc", "itm"))
    return BLIP(cfg).eval()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_random_blip_base_embeddings_and_itm_keep_the_contract(blip_base, precision):
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 224, 224) * 2 - 1  # already normalized pixels: no decoding in this test
    texts = ["a dog running on the beach", "two cups of coffee on a wooden table"]
    low = runtime.apply(copy.deepcopy(blip_base), runtime.resolve("cpu", precision))
    assert low.precision == precision
    ref_img, img = (clipblip.image_features(m, pixels) for m in (blip_base, low))
    ref_txt, txt = (clipblip.text_features(m, texts) for m in (blip_base, low))
    floor = P.CONTRACT[precision]["cosine"]
    assert P.cosine(ref_img, img) >= floor and P.cosine(ref_txt, txt) >= floor
    ref_m, m = (clipblip.match(x, pixels, texts) for x in (blip_base, low))
    assert (ref_m - m).abs().max() < 0.02
