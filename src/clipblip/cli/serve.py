"""`clipblip serve`: the models (and an index) behind HTTP, with a web page at /."""

from __future__ import annotations

import argparse
import os
import sys

from ..catalog import DEFAULT
from ..errors import ClipBlipError
from .common import add_runtime, note_embedded, set_threads

KEY_ENV = "CLIPBLIP_API_KEY"
_KEY_FILE_MAX = 4096  # bytes read from --api-key-file: a key, not whatever file the flag was pointed at


def cmd_serve(args) -> int:
    from ..serve.app import create_app
    from ..serve.server import allowed_hosts, run
    from ..serve.work import load_models

    set_threads(args)
    key, hosts, limits = api_key(args), allowed_hosts(args.host, args.allowed_hosts), _limits(args)
    models = load_models(args.model, args.blip, args.vqa, args.index, device=args.device, precision=args.precision)
    note_embedded(*(v for k, v in models.sources.items() if k != "index" and v))
    app = create_app(models, limits, max_batch=1 if args.no_batching else args.max_batch, wait_ms=args.wait_ms,
                     max_queue=args.max_queue, api_key=key, allowed_hosts=hosts)
    run(app, args.host, args.port, limits, args.log_level)
    return 0


def _limits(args):
    from ..serve.forms import Limits

    return Limits(max_body_bytes=int(args.max_upload_mb * 2**20), max_items=args.max_items,
                  max_inflight_bytes=int(args.max_inflight_mb * 2**20), body_timeout_s=args.body_timeout,
                  header_timeout_s=args.header_timeout, max_connections=args.max_connections)


def api_key(args) -> str | None:
    """The key from --api-key-file, else --api-key (with a warning: a command line is visible to every user of
    the machine), else $CLIPBLIP_API_KEY; None: the server needs no key."""
    if args.api_key_file and args.api_key:
        raise ClipBlipError("give the key once: --api-key-file or --api-key, not both")
    if args.api_key_file:
        return _checked(_read_key_file(args.api_key_file), f"the key in {args.api_key_file!r}")
    if args.api_key:
        print("clipblip: warning: --api-key is visible to every user of this machine in the process list; use "
              f"--api-key-file FILE or ${KEY_ENV} instead", file=sys.stderr)
        return _checked(args.api_key, "--api-key")
    env = os.environ.get(KEY_ENV)
    return _checked(env, f"${KEY_ENV}") if env else None


def _read_key_file(path: str) -> str:
    try:
        with open(path, "rb") as f:  # a pipe is fine too: --api-key-file <(pass show clipblip)
            raw = f.read(_KEY_FILE_MAX + 1)
    except OSError as e:
        raise ClipBlipError(f"cannot read --api-key-file {path!r}: {e.strerror or e}") from None
    if len(raw) > _KEY_FILE_MAX:
        raise ClipBlipError(f"--api-key-file {path!r} is over {_KEY_FILE_MAX} bytes: give a file that holds the key "
                            "alone")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ClipBlipError(f"--api-key-file {path!r} is not text: give a file that holds the key alone") from None


def _checked(key: str, where: str) -> str:
    # a header carries printable ASCII; a key with anything else could never be sent, so no request would pass
    if not key or not (key.isascii() and key.isprintable()) or key != key.strip():
        raise ClipBlipError(f"{where} must be a non-empty key of printable ASCII characters without surrounding "
                            "spaces")
    return key


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its "invalid <type> value" message
    return parse


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="HTTP service and web page: embed, classify, search, caption, ask, match")
    p.add_argument("--model", "-m", help=f"CLIP model source (default: the index's model, else {DEFAULT['clip']})")
    p.add_argument("--blip", default=DEFAULT["blip"], help="BLIP model for /caption and /match")
    p.add_argument("--vqa", default=DEFAULT["vqa"], help="BLIP VQA model for /ask")
    p.add_argument("--index", help="an index (clipblip.index) for /search and the page's search box")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface; "
                   "give an API key then)")
    p.add_argument("--port", type=int, default=8000, help="the TCP port to listen on")
    p.add_argument("--max-batch", type=_positive(int), default=32, help="most items in one model call")
    p.add_argument("--wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    p.add_argument("--no-batching", action="store_true", help="one item per model call (for comparison)")
    p.add_argument("--max-queue", type=_positive(int), default=256, help="items waiting beyond this get 503")
    _add_limits(p)
    p.add_argument("--api-key-file", metavar="FILE", help=f"require the key this file holds in the X-API-Key header "
                                                          f"(or set ${KEY_ENV})")
    p.add_argument("--api-key", help="the key itself (visible in the process list: prefer --api-key-file)")
    p.add_argument("--allowed-hosts", metavar="NAMES",
                   help="the Host names the server answers to, comma-separated ('*': any); default: localhost, "
                        "127.0.0.1 and [::1] when bound to loopback (against DNS rebinding), any otherwise")
    add_runtime(p)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="the web server's (uvicorn's) log level")
    p.set_defaults(run=cmd_serve)


def _add_limits(p) -> None:
    p.add_argument("--max-upload-mb", type=_positive(float), default=10.0,
                   help="largest request body, uploads included")
    p.add_argument("--max-items", type=_positive(int), default=32, help="most texts, images or labels in one request")
    p.add_argument("--max-inflight-mb", type=_positive(float), default=512.0,
                   help="memory that decoding images may take, all requests together; a request that does not fit "
                        "now gets 503 with Retry-After")
    p.add_argument("--max-connections", type=_positive(int), default=64,
                   help="open connections at once; beyond them requests get 503")
    p.add_argument("--header-timeout", type=_positive(float), default=10.0,
                   help="seconds a connection has to send a whole request head")
    p.add_argument("--body-timeout", type=_positive(float), default=60.0,
                   help="seconds a request has to send its body (408 after)")
