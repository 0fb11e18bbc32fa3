"""`clipblip serve`: the models (and an index) behind HTTP, with a web page at /."""

from __future__ import annotations

import os
import sys

from ..catalog import DEFAULT
from ..errors import ClipBlipError


def load_models(clip: str | None, blip: str, vqa: str, index: str | None):
    """Models for the service; the CLIP model defaults to the one the index was built with."""
    from .. import load
    from .work import Models

    idx = None
    if index:
        from ..index import Index

        idx = Index.open(index)
        if clip is None:
            clip = idx.model
        elif clip != idx.model:
            print(f"clipblip: the index was built with {idx.model}, searching it with {clip}", file=sys.stderr)
    clip = clip or DEFAULT["clip"]
    models = Models(clip=load(clip).eval(), blip=load(blip).eval(), vqa=load(vqa).eval(), index=idx,
                    sources={"clip": clip, "blip": blip, "vqa": vqa, "index": index})
    if idx is not None and idx.dim != models.clip.config.embed_dim:
        raise ClipBlipError(f"the index holds {idx.dim}-d vectors but {clip} makes "
                            f"{models.clip.config.embed_dim}-d ones: serve it with the model it was built with")
    return models


def cmd_serve(args) -> int:
    import torch
    import uvicorn

    from .app import create_app
    from .forms import Limits

    if args.threads:
        torch.set_num_threads(args.threads)
    models = load_models(args.model, args.blip, args.vqa, args.index)
    limits = Limits(max_body_bytes=int(args.max_upload_mb * 2**20), max_items=args.max_items)
    app = create_app(models, limits, max_batch=1 if args.no_batching else args.max_batch, wait_ms=args.wait_ms,
                     max_queue=args.max_queue, api_key=args.api_key or os.environ.get("CLIPBLIP_API_KEY"))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_parser(sub, common) -> None:
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
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(run=cmd_serve)
