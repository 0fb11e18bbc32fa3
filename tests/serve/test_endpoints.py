"""Every endpoint on valid input, checked against the task functions it serves."""

import pytest
import torch

from clipblip.index import query
from clipblip.tasks.caption import caption
from clipblip.tasks.inputs import image_features, text_features
from clipblip.tasks.itm import match
from clipblip.tasks.vqa import answer
from clipblip.tasks.zeroshot import classify


def test_embed_texts_and_images(client, models, shapes_dir, uploads):
    c = client()
    r = c.post("/embed", data={"text": ["a red circle", "two blue squares"]},
               files=[("image", uploads[0]), ("image", uploads[1])])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dim"] == models.clip.config.embed_dim and body["model"] == "shapes-clip"
    want_t = text_features(models.clip, ["a red circle", "two blue squares"])
    want_i, _, _ = image_features(models.clip, sorted(shapes_dir.glob("*.png"))[:2])
    torch.testing.assert_close(torch.tensor(body["texts"]), want_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(body["images"]), want_i, atol=1e-5, rtol=0)


def test_classify(client, models, shapes_dir, uploads):
    labels = ["circle", "square", "triangle"]
    r = client().post("/classify", data={"label": labels}, files=[("image", uploads[2])])
    assert r.status_code == 200, r.text
    got = r.json()["results"][0]
    want = classify(models.clip, [sorted(shapes_dir.glob("*.png"))[2]], labels, top_k=3)[0]
    assert [x["label"] for x in got] == [lab for lab, _ in want]
    assert sum(x["prob"] for x in got) == pytest.approx(1.0, abs=1e-5)


def test_search_and_image(client, models, shapes_dir):
    c = client()
    r = c.post("/search", data={"text": "a large blue circle", "k": "3"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    want = query(models.index, models.clip, text="a large blue circle", k=3)
    assert [h["id"] for h in hits] == [h.id for h in want]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in want], abs=1e-5)
    img = c.get(hits[0]["url"])
    assert img.status_code == 200 and img.content == open(want[0].path, "rb").read()
    assert c.get("/image/987654").status_code == 404  # not an id /search gave


def test_caption_ask_match(client, models, shapes_dir, uploads):
    c, path = client(), sorted(shapes_dir.glob("*.png"))[0]
    r = c.post("/caption", files=[("image", uploads[0])])
    assert r.status_code == 200, r.text
    assert r.json()["captions"] == caption(models.blip, [path])

    question = "what color is the small object?"
    r = c.post("/ask", data={"question": question}, files=[("image", uploads[0])])
    assert r.json() == {"question": question, "answer": answer(models.vqa, [path], [question])[0]}
    r = c.post("/ask", data={"question": question, "answer": ["red", "blue", "green"]}, files=[("image", uploads[0])])
    ranked = answer(models.vqa, [path], [question], candidates=["red", "blue", "green"])[0]
    assert [a["answer"] for a in r.json()["answers"]] == [a for a, _ in ranked]

    texts = ["a red circle", "three green squares"]
    r = c.post("/match", data={"text": texts}, files=[("image", uploads[0])])
    want = match(models.blip, [path], texts)[0].tolist()
    assert [x["match"] for x in r.json()["results"]] == pytest.approx(want, abs=1e-5)


def test_health_metrics_schema_page(client, models):
    c = client()
    assert c.get("/info").json() == {"models": {"clip": "shapes-clip", "blip": "shapes-blip", "vqa": "shapes-blip-vqa",
                                                "index": "idx"}, "index": 6, "dim": models.clip.config.embed_dim}
    c.post("/embed", data={"text": "a red circle"})
    m = c.get("/metrics").json()
    assert m["endpoints"]["/embed"]["requests"] == 1 and m["endpoints"]["/embed"]["status"] == {"200": 1}
    assert m["batch_sizes"]["embed_text"] == {"1": 1}
    assert m["endpoints"]["/embed"]["latency_ms"]["p50"] > 0
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/embed", "/classify", "/search", "/caption", "/ask", "/match", "/healthz", "/metrics"} <= set(paths)
    page = c.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text
    assert c.get("/static/app.js").status_code == 200


def test_no_index_is_a_clear_404(models):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from clipblip.serve.app import create_app

    with TestClient(create_app(replace(models, index=None))) as c:
        r = c.post("/search", data={"text": "a red circle"})
        assert r.status_code == 404 and "--index" in r.json()["error"]
        assert c.get("/info").json()["index"] is None
