"""Bad input gets a 4xx with a JSON error that says what is wrong, and the server keeps serving."""

import threading
import time

import pytest

GOOD = ("/embed", {"data": {"text": "a red circle"}})


def _bad_inputs(upload):
    name, data, kind = upload
    return {
        "oversize upload": ("/caption", {"files": [("image", ("big.png", data + b"\0" * 60_000, kind))]}, 413),
        "non-image": ("/caption", {"files": [("image", ("notes.png", b"just some text", "image/png"))]}, 422),
        "corrupt image": ("/caption", {"files": [("image", ("cut.png", data[: len(data) // 2], kind))]}, 422),
        "empty file": ("/caption", {"files": [("image", ("empty.png", b"", kind))]}, 422),
        "empty text": ("/embed", {"data": {"text": "   "}}, 422),
        "overlong text": ("/embed", {"data": {"text": "red " * 300}}, 422),
        "unknown field": ("/embed", {"data": {"text": "a red circle", "texts": "typo"}}, 422),
        "too many texts": ("/embed", {"data": {"text": [f"circle {i}" for i in range(33)]}}, 422),
        "too many images": ("/ask", {"data": {"question": "what?"}, "files": [("image", upload)] * 2}, 422),
        "one label": ("/classify", {"data": {"label": "circle"}, "files": [("image", upload)]}, 422),
        "no image": ("/ask", {"data": {"question": "what color is it?"}}, 422),
        "image as text": ("/caption", {"data": {"image": "scene0.png"}}, 422),
        "nothing to embed": ("/embed", {"data": {}, "files": []}, 415),
        "json body": ("/embed", {"json": {"text": ["a red circle"]}}, 415),
        "bad k": ("/search", {"data": {"text": "a red circle", "k": "many"}}, 422),
        "k too large": ("/search", {"data": {"text": "a red circle", "k": "1000"}}, 422),
        "two queries": ("/search", {"data": {"text": "a red circle"}, "files": [("image", upload)]}, 422),
        "broken multipart": ("/caption", {"content": b"--xx\r\nnonsense",
                                          "headers": {"content-type": "multipart/form-data"}}, 400),
        "unknown path": ("/nowhere", {"data": {}}, 404),
        "wrong method": ("/healthz", {"data": {}}, 405),
    }


CASES = list(_bad_inputs(("x.png", b"", "image/png")))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_json_4xx_and_the_next_request_works(client, uploads, case):
    from clipblip.serve.forms import Limits

    c = client(limits=Limits(max_body_bytes=50_000))
    path, kwargs, status = _bad_inputs(uploads[0])[case]
    r = c.post(path, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and len(error) > 10
    ok = c.post(GOOD[0], **GOOD[1])
    assert ok.status_code == 200 and len(ok.json()["texts"]) == 1


def test_messages_say_what_is_wrong(client, uploads):
    from clipblip.serve.forms import Limits

    c = client(limits=Limits(max_body_bytes=50_000))
    bad = _bad_inputs(uploads[0])
    said = {case: c.post(bad[case][0], **bad[case][1]).json()["error"] for case in bad}
    assert "50000 bytes" in said["oversize upload"]
    assert "notes.png" in said["non-image"] and "not an image" in said["non-image"]
    assert "'texts'" in said["unknown field"] and "text" in said["unknown field"].split("takes:")[1]
    assert "33" in said["too many texts"] and "32" in said["too many texts"]
    assert "1200 characters" in said["overlong text"]
    assert "multipart/form-data" in said["json body"]


def test_api_key(client):
    c = client(api_key="s3cret")
    assert c.post("/embed", data={"text": "a red circle"}).status_code == 401
    assert c.post("/embed", data={"text": "a red circle"}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.get("/metrics").status_code == 401
    assert c.post("/embed", data={"text": "a red circle"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # liveness needs no key
    assert c.get("/info").status_code == 401
    assert c.get("/").status_code == 200  # the page holds no data; its requests send the key


def test_full_queue_answers_503_not_a_hang(client):
    # One item fits in the queue; the batcher holds it for its 1 s wait window, so a second request finds it full.
    c = client(max_queue=1, max_batch=8, wait_ms=1000)
    c.app.state.service.batcher.arriving = None  # wait out the window even with no other request on its way
    first = {}
    t = threading.Thread(target=lambda: first.update(r=c.post("/embed", data={"text": "a red circle"})))
    t.start()
    deadline = time.monotonic() + 5
    while c.app.state.service.batcher.depth() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    r = c.post("/embed", data={"text": "a blue square"})
    assert t.is_alive()  # answered while the first request still waits: refused at once, not queued behind it
    assert r.status_code == 503 and "queue is full" in r.json()["error"]
    assert r.headers["retry-after"] == "1"
    t.join()
    assert first["r"].status_code == 200
    assert c.post("/embed", data={"text": "a blue square"}).status_code == 200
