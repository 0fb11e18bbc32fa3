"""`clipblip search --rerank` says what its scores are (they sit beside `match`'s probabilities and are not ones),
and what it says is how they are computed."""

import json

import pytest
import torch

import clipblip
from clipblip.cli import main
from clipblip.tasks.inputs import text_features
from clipblip.tasks.itm import image_tokens, itm_scores


def _search(capsys, *argv):
    code = main(["search", "a red square", *map(str, argv)])
    out, _ = capsys.readouterr()
    return code, out


def test_reranked_scores_are_named_and_are_itm_logit_plus_itc_cosine(tiny_blip_dir, image_folder, capsys):
    images = [image_folder / "0_red.jpg", image_folder / "1_green.png"]
    code, out = _search(capsys, "--images", *images, "--rerank", "--top-k", "2", "-m", tiny_blip_dir)
    assert code == 0 and out.splitlines()[0].startswith("# score: ITM match logit + ITC cosine similarity")
    code, out = _search(capsys, "--images", *images, "--rerank", "--top-k", "2", "-m", tiny_blip_dir, "--json")
    doc = json.loads(out)
    assert "ITM match logit + ITC cosine similarity" in doc["scale"] and "not a probability" in doc["scale"]
    model = clipblip.load(tiny_blip_dir)
    with torch.no_grad():
        tokens, feats, _ = image_tokens(model, images)
        sims = (text_features(model, ["a red square"]) @ feats.T)[0]
        logits = itm_scores(model, tokens, model.tokenize(["a red square"], first="enc"))[:, 0, 1]
    expected = {str(p): float(s) for p, s in zip(images, logits + sims)}
    assert {h["image"]: h["score"] for h in doc["results"][0]["hits"]} == pytest.approx(expected, abs=1e-4)
