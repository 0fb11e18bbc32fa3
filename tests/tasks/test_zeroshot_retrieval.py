"""Zero-shot classification and retrieval, checked against the same computation written out by hand."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clipblip
from clipblip import ClipBlipError
from clipblip.tasks.retrieval import topk
from clipblip.tasks.zeroshot import DEFAULT_TEMPLATES, class_embeddings


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    return clipblip.load(tiny_clip_dir)


def _images(folder):
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png") and p.name != "broken.jpg")


def test_classify_equals_the_written_out_ensemble(model, image_folder):
    labels, templates = ["cat", "dog", "red square"], ["a photo of a {}.", "a {} in the wild"]
    paths = _images(image_folder)
    result = clipblip.classify(model, paths, labels, templates=templates, top_k=3)
    with torch.no_grad():
        cls = []
        for label in labels:
            t = F.normalize(model.encode_text(model.tokenize([tp.format(label) for tp in templates])), dim=-1)
            cls.append(F.normalize(t.mean(0), dim=-1))
        img = F.normalize(model.encode_image(model.preprocess(paths)), dim=-1)
        probs = (model.logit_scale.exp() * img @ torch.stack(cls).t()).softmax(-1)
    for row, p in zip(result, probs):
        order = p.argsort(descending=True).tolist()
        assert [lab for lab, _ in row] == [labels[j] for j in order]
        assert [v for _, v in row] == pytest.approx([float(p[j]) for j in order], abs=1e-6)


def test_inputs_pil_paths_and_tensor_agree(model, image_folder):
    paths = _images(image_folder)[:3]
    pils = [Image.open(p) for p in paths]
    a = clipblip.classify(model, paths, ["a", "b"], top_k=2)
    b = clipblip.classify(model, pils, ["a", "b"], top_k=2)
    c = clipblip.classify(model, model.preprocess(paths), ["a", "b"], top_k=2)
    assert a == b == c


def test_top_k_and_default_templates(model, image_folder):
    path = _images(image_folder)[0]
    out = clipblip.classify(model, path, ["x", "y", "z"], top_k=2)
    assert len(out) == 1 and len(out[0]) == 2 and out[0][0][1] >= out[0][1][1]
    assert class_embeddings(model, ["x"]).shape == (1, 16)
    assert all("{}" in t for t in DEFAULT_TEMPLATES)


def test_bad_inputs_raise_clear_errors(model, image_folder):
    with pytest.raises(ClipBlipError, match="no labels"):
        clipblip.classify(model, _images(image_folder)[0], [])
    with pytest.raises(ClipBlipError, match="'{}'"):
        clipblip.classify(model, _images(image_folder)[0], ["x"], templates=["no slot"])
    with pytest.raises(ClipBlipError, match="broken.jpg"):
        clipblip.classify(model, [image_folder / "broken.jpg"], ["x"])


@pytest.mark.parametrize("chunk", [1, 7, 64, 100000])
def test_chunked_topk_equals_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(9, 16, generator=g), torch.randn(200, 16, generator=g)
    s, i = topk(queries, gallery, k=5, chunk=chunk, query_chunk=4)
    full = F.normalize(queries, dim=-1) @ F.normalize(gallery, dim=-1).t()
    ref_s, ref_i = full.topk(5, dim=1)
    assert torch.equal(i, ref_i)
    assert torch.allclose(s, ref_s, atol=1e-6)


def test_topk_larger_than_gallery():
    s, i = topk(torch.randn(2, 4), torch.randn(3, 4), k=10, chunk=2)
    assert s.shape == (2, 3) and sorted(i[0].tolist()) == [0, 1, 2]


def test_text_to_image_finds_the_matching_features(model):
    texts = ["one", "two", "three"]
    feats = clipblip.text_features(model, texts)
    hits = clipblip.text_to_image(model, ["two"], feats, top_k=1)
    assert hits[0][0][0] == 1 and hits[0][0][1] == pytest.approx(1.0, abs=1e-5)


def test_image_to_text_ranks_by_similarity(model, image_folder):
    paths = _images(image_folder)[:2]
    texts = ["alpha", "beta", "gamma", "delta"]
    tf = clipblip.text_features(model, texts)
    hits = clipblip.image_to_text(model, paths, tf, top_k=4)
    sims = clipblip.image_features(model, paths) @ tf.t()
    for row, sim in zip(hits, sims):
        assert [j for j, _ in row] == sim.argsort(descending=True).tolist()
