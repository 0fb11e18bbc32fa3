"""The service against hostile clients (issue 14, items 5, 6 and 12): refused from the request head before the body
is read, slow clients cut off, image decoding admitted by the memory it takes, nothing of the server's files told."""

import asyncio
import gc
import io
import socket
import threading
import time
import weakref
from contextlib import contextmanager

import torch
from PIL import Image

from clipblip.serve.forms import Limits

GOOD_TEXT = {"text": "a red circle"}


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _live(app, limits: Limits):
    """`app` served by uvicorn on loopback, configured as `clipblip serve` configures it; yields the port."""
    import uvicorn

    from clipblip.serve.server import config

    port = _free_port()
    server = uvicorn.Server(config(app, "127.0.0.1", port, limits, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def _connect(port: int, timeout: float = 15) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)  # far past the server's timeouts here: reaching it means the server kept the connection
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """Read until the server closes the connection (True) or the socket's timeout passes (False)."""
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _asgi(app, path: str, headers: list, chunks):
    """Call the ASGI app directly: `chunks` is what receive() gives, in order (None: the client stalls for ever);
    returns (status, how many times receive() was called)."""
    calls, sent = [0], []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), *headers], "client": ("127.0.0.1", 1), "server": ("t", 80)}

    async def receive():
        calls[0] += 1
        message = chunks[min(calls[0], len(chunks)) - 1]
        if message is None:
            await asyncio.Event().wait()
        return message

    async def send(message):
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 20))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), calls[0]


# ---------------------------------------------------------------- item 5: the head first, then a bounded body


def test_a_request_without_the_key_is_refused_before_its_body_is_read(models):
    from clipblip.serve.app import create_app

    app = create_app(models, api_key="s3cret")
    try:
        body = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
        head = [(b"content-type", b"multipart/form-data; boundary=b"), (b"content-length", b"9000000")]
        status, reads = _asgi(app, "/embed", head, [body])
        assert (status, reads) == (401, 0)
        status, reads = _asgi(app, "/embed", [*head, (b"x-api-key", b"s3cre")], [body])
        assert (status, reads) == (401, 0)
    finally:
        app.state.service.batcher.close()


def test_a_2000_field_form_without_the_key_gets_401_not_400(client):
    c = client(api_key="s3cret")
    fields = {f"f{i}": "v" for i in range(2000)}
    r = c.post("/embed", data=fields)
    assert r.status_code == 401 and "X-API-Key" in r.json()["error"]
    assert c.post("/embed", data=fields, headers={"X-API-Key": "s3cret"}).status_code == 400  # too many fields


def test_a_body_that_stalls_gets_408(models):
    from clipblip.serve.app import create_app

    app = create_app(models, Limits(body_timeout_s=0.3))
    try:
        head = [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", b"100")]
        status, _ = _asgi(app, "/embed", head, [{"type": "http.request", "body": b"text=a", "more_body": True}, None])
        assert status == 408
    finally:
        app.state.service.batcher.close()


def test_slow_and_idle_connections_are_closed_and_keyless_bodies_not_waited_for(models):
    from clipblip.serve.app import create_app

    limits = Limits(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=8)
    with _live(create_app(models, limits, api_key="s3cret"), limits) as port:
        idle = _connect(port)  # sends nothing
        half_head = _connect(port)
        half_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        second_half = _connect(port)  # a whole request, then half of the next on the same connection
        second_half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _response(second_half).startswith(b"HTTP/1.1 200")
        second_half.sendall(b"GET /healthz HTTP/1.1\r\n")
        half_body = _connect(port)
        half_body.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: s3cret\r\nContent-Length: 100\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntext=a")
        no_key = _connect(port)  # declares 9 MB and sends none of it: the 401 comes without waiting for it
        no_key.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9000000\r\n"
                       b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        assert _response(no_key).startswith(b"HTTP/1.1 401")
        assert _response(half_body).startswith(b"HTTP/1.1 408")
        for s in (idle, half_head, second_half, half_body, no_key):
            assert _closed_by_server(s)
            s.close()


def test_connections_past_the_limit_get_503(models):
    from clipblip.serve.app import create_app

    limits = Limits(max_connections=3)
    with _live(create_app(models, limits), limits) as port:
        held = [_connect(port) for _ in range(2)]
        third = _connect(port)
        third.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _response(third).startswith(b"HTTP/1.1 200")  # three connections are served
        held.append(third)
        extra = _connect(port)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _response(extra).startswith(b"HTTP/1.1 503")
        for s in [*held, extra]:
            s.close()
        again = _connect(port)
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _response(again).startswith(b"HTTP/1.1 200")
        again.close()


# ------------------------------------------------------ item 6: admission by decoded bytes, images reduced at once


def test_images_are_admitted_by_the_memory_their_decoding_takes(client, uploads):
    from clipblip.serve.admission import decoded_bytes

    big = ("big.png", _png(1000, 1000), "image/png")  # 4 KB uploaded, 4 MB decoded
    c = client(limits=Limits(max_inflight_bytes=3 * 2**20))
    r = c.post("/embed", files=[("image", big)])
    assert r.status_code == 413 and "--max-inflight-mb" in r.json()["error"]

    c = client(limits=Limits(max_inflight_bytes=decoded_bytes(1000, 1000, "RGB") + 1000))
    budget = c.app.state.service.budget
    with budget.hold(2000):  # another request is decoding: this one fits the budget, but not now
        r = c.post("/embed", files=[("image", big)])
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert c.post("/embed", files=[("image", uploads[0])]).status_code == 200  # a small one still fits
    assert c.post("/embed", files=[("image", big)]).status_code == 200
    assert budget.used == 0


def test_what_waits_for_the_model_is_the_model_input_not_the_upload(client, models):
    c = client()
    batcher = c.app.state.service.batcher
    seen, run = [], batcher.run

    def recording(key, items):
        seen.append((key[0], items))
        return run(key, items)

    batcher.run = recording
    upload = [("image", ("wide.png", _png(900, 300), "image/png"))]
    assert c.post("/embed", files=upload).status_code == 200
    assert c.post("/caption", files=upload).status_code == 200
    for task, model in (("embed_image", models.clip), ("caption", models.blip)):
        (px,) = next(items for t, items in seen if t == task)
        s = model.preprocess.size
        assert isinstance(px, torch.Tensor) and px.dtype == torch.uint8 and tuple(px.shape) == (3, s, s)


def test_the_batcher_keeps_no_item_after_its_batch_has_run():
    from clipblip.serve.batching import Batcher

    class Item:
        pass

    async def main():
        b = Batcher(lambda key, items: [0] * len(items), wait_s=0)
        item = Item()
        ref = weakref.ref(item)
        await b.submit(("t",), [item])
        del item
        await asyncio.sleep(0.2)  # the worker is back waiting for the next batch
        gc.collect()
        alive = ref() is not None
        b.close()
        return alive

    assert asyncio.run(main()) is False


def test_formats_pil_would_hand_to_another_program_are_refused_from_the_header(client):
    eps = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(eps, format="EPS")  # decoding it would run Ghostscript
    r = client().post("/caption", files=[("image", ("a.eps", eps.getvalue(), "application/postscript"))])
    assert r.status_code == 422 and "EPS" in r.json()["error"] and "does not read" in r.json()["error"]


# ------------------------------------------------------------------- item 12: what the server tells, whom it answers


def test_healthz_says_ok_and_versions_only(client, index_dir):
    r = client().get("/healthz")
    assert r.status_code == 200 and set(r.json()) == {"status", "versions"} and r.json()["status"] == "ok"
    assert "clipblip" in r.json()["versions"]
    assert str(index_dir) not in r.text and "shapes" not in r.text


def test_only_the_allowed_host_names_are_answered(client):
    c = client(allowed_hosts=("localhost", "127.0.0.1", "::1"))
    r = c.post("/embed", data=GOOD_TEXT, headers={"Host": "rebound.example:8000"})
    assert r.status_code == 400 and "--allowed-hosts" in r.json()["error"]
    assert c.get("/healthz", headers={"Host": "attacker.example"}).status_code == 400
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert c.post("/embed", data=GOOD_TEXT, headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_default_to_loopback_names_on_loopback():
    from clipblip.serve.server import allowed_hosts

    assert set(allowed_hosts("127.0.0.1", None)) == {"localhost", "127.0.0.1", "[::1]"}
    assert "::1" in allowed_hosts("::1", None) and "localhost" in allowed_hosts("localhost", None)
    assert allowed_hosts("0.0.0.0", None) is None  # the names a public server is reached by are not known
    assert allowed_hosts("127.0.0.1", "*") is None
    assert allowed_hosts("0.0.0.0", "a.example, b.example") == ("a.example", "b.example")


def test_the_key_comes_from_a_file_or_the_environment_and_argv_warns(tmp_path, monkeypatch, capsys):
    from clipblip.cli import EXIT_ERROR, main, parser
    from clipblip.cli.serve import api_key

    monkeypatch.delenv("CLIPBLIP_API_KEY", raising=False)
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-from-file\n")
    assert api_key(parser().parse_args(["serve", "--api-key-file", str(key_file)])) == "s3cret-from-file"
    assert api_key(parser().parse_args(["serve"])) is None
    monkeypatch.setenv("CLIPBLIP_API_KEY", "s3cret-from-env")
    assert api_key(parser().parse_args(["serve"])) == "s3cret-from-env"
    capsys.readouterr()
    assert api_key(parser().parse_args(["serve", "--api-key", "visible"])) == "visible"
    assert "process list" in capsys.readouterr().err

    key_file.write_bytes(b"k" * 5000)
    for bad in (str(key_file), str(tmp_path / "missing")):  # refused in one line, before any model is loaded
        assert main(["serve", "--api-key-file", bad]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--api-key-file" in err
