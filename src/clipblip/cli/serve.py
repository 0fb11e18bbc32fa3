"""`clipblip serve`: the models (and an index) behind HTTP, with a web page at /."""

from __future__ import annotations

import os

from ..catalog import DEFAULT
from .common import add_runtime, set_threads


def cmd_serve(args) -> int:
    import uvicorn

    from ..serve.app import create_app
    from ..serve.forms import Limits
    from ..serve.work import load_models

    set_threads(args)
    models = load_models(args.model, args.blip, args.vqa, args.index, device=args.device, precision=args.precision)
    limits = Limits(max_body_bytes=int(args.max_upload_mb * 2**20), max_items=args.max_items)
    app = create_app(models, limits, max_batch=1 if args.no_batching else args.max_batch, wait_ms=args.wait_ms,
                     max_queue=args.max_queue, api_key=args.api_key or os.environ.get("CLIPBLIP_API_KEY"))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="HTTP service and web page: embed, classify, search, caption, ask, match")
    p.add_argument("--model", "-m", help=f"CLIP model source (default: the index's model, else {DEFAULT['clip']})")
    p.add_argument("--blip", default=DEFAULT["blip"], help="BLIP model for /caption and /match")
    p.add_argument("--vqa", default=DEFAULT["vqa"], help="BLIP VQA model for /ask")
    p.add_argument("--index", help="an index (clipblip.index) for /search and the page's search box")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="most items in one model call")
    p.add_argument("--wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    p.add_argument("--no-batching", action="store_true", help="one item per model call (for comparison)")
    p.add_argument("--max-queue", type=int, default=256, help="items waiting beyond this get 503")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body, uploads included")
    p.add_argument("--max-items", type=int, default=32, help="most texts, images or labels in one request")
    p.add_argument("--api-key", help="require this key in the X-API-Key header (default: $CLIPBLIP_API_KEY)")
    add_runtime(p)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(run=cmd_serve)
