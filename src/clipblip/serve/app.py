"""The HTTP service: FastAPI endpoints over the micro-batcher, JSON errors for every bad input, a web page at /.

Every endpoint but /healthz (and the page, its static files and the OpenAPI docs, which hold no data) takes the
API key in the X-API-Key header when the server has one; the middleware checks it, and the Host header, before it
reads a byte of the body (middleware.Guard). Inputs are form fields (multipart/form-data): `text`, `image`
(files), `label`, `question`, `answer`, `k`; repeat a field to send several. Images are admitted by the memory
their decoding takes and reduced to the model's input before they are queued (forms.images).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ClipBlipError
from ..version import __version__
from . import forms
from .admission import Budget
from .batching import Batcher, QueueFull
from .forms import Limits
from .metrics import Metrics
from .middleware import Guard
from .work import Models, runner

STATIC = Path(__file__).parent / "static"
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="the server's key (--api-key-file), if it has one")
_SEEN_IDS = 100_000  # index ids whose image /image/{id} may serve: those /search has returned


@dataclass
class Service:
    """What the endpoints share (app.state.service)."""
    models: Models
    batcher: Batcher
    limits: Limits
    budget: Budget
    metrics: Metrics = field(default_factory=Metrics)
    seen: OrderedDict = field(default_factory=OrderedDict)  # index id -> image path, most recent last

    def remember(self, hits) -> None:
        for h in hits:
            if h.path:
                self.seen[h.id] = h.path
                self.seen.move_to_end(h.id)
        while len(self.seen) > _SEEN_IDS:
            self.seen.popitem(last=False)

    async def pixels(self, files, model, least: int = 1, most: int | None = None) -> list:
        """The uploads reduced to `model`'s input (uint8 [3, S, S] each), admitted by the decoding budget."""
        return await forms.images(files, self.limits, model.preprocess, self.budget, least, most)


# Dependencies are async so that FastAPI runs them on the event loop, not through a thread pool hop each.
async def service(request: Request) -> Service:
    return request.app.state.service


async def key_header(key: str | None = Security(_KEY_HEADER)) -> None:
    """Declares the X-API-Key header in the OpenAPI schema; the check itself is the middleware's (Guard), made
    before the body is read."""


api = APIRouter(dependencies=[Depends(key_header), Depends(forms.known_fields)])


@api.post("/embed", summary="L2-normalised embeddings of texts and/or images")
async def embed(text: list[str] | None = Form(None), image: list[UploadFile] | None = File(None),
                s: Service = Depends(service)):
    texts = forms.texts(text, "text", s.limits, least=0)
    images = await s.pixels(image, s.models.clip, least=0)
    if not texts and not images:
        raise forms.unprocessable("nothing to embed: send 'text' fields and/or 'image' files")
    out = {"model": s.models.names().get("clip"), "dim": s.models.clip.config.embed_dim}
    if texts:
        out["texts"] = await s.batcher.submit(("embed_text",), texts)
    if images:
        out["images"] = await s.batcher.submit(("embed_image",), images)
    return JSONResponse(out)  # plain floats: skip FastAPI's per-value encoder (a third of a request's time)


@api.post("/classify", summary="zero-shot classification of images against the labels given")
async def classify(image: list[UploadFile] = File(...), label: list[str] = Form(...), s: Service = Depends(service)):
    labels = tuple(forms.texts(label, "label", s.limits, least=2))
    results = await s.batcher.submit(("classify", labels), await s.pixels(image, s.models.clip))
    return {"results": [[{"label": lab, "prob": p} for lab, p in r] for r in results]}


@api.post("/search", summary="the index's images nearest to a text (or an image)")
async def search(text: str | None = Form(None), image: list[UploadFile] | None = File(None),
                 k: int = Form(10, ge=1, le=100), s: Service = Depends(service)):
    if s.models.index is None:
        raise HTTPException(404, "this server has no index: start it with --index PATH")
    texts = forms.texts([text] if text is not None else [], "text", s.limits, least=0)
    images = await s.pixels(image, s.models.clip, least=0)
    if len(texts) + len(images) != 1:
        raise forms.unprocessable("send one query: a 'text' field or one 'image' file")
    hits = (await s.batcher.submit(("search", k), [("text", texts[0]) if texts else ("image", images[0])]))[0]
    s.remember(hits)
    return {"query": texts[0] if texts else None,
            "hits": [{"id": h.id, "score": h.score, "path": h.path, "caption": h.caption, "meta": h.meta,
                      "url": f"/image/{h.id}" if h.path else None} for h in hits]}


@api.post("/caption", summary="BLIP captions, one per image (greedy decoding)")
async def caption(image: list[UploadFile] = File(...), s: Service = Depends(service)):
    return {"captions": await s.batcher.submit(("caption",), await s.pixels(image, s.models.blip))}


@api.post("/ask", summary="BLIP VQA: a generated answer, or the candidate 'answer's ranked")
async def ask(image: list[UploadFile] = File(...), question: str = Form(...), answer: list[str] | None = Form(None),
              s: Service = Depends(service)):
    img = await s.pixels(image, s.models.vqa, most=1)
    question = forms.texts([question], "question", s.limits)[0]
    candidates = tuple(forms.texts(answer, "answer", s.limits, least=0)) or None
    result = (await s.batcher.submit(("ask", candidates), [(img[0], question)]))[0]
    if candidates:
        return {"question": question, "answers": [{"answer": a, "prob": p} for a, p in result]}
    return {"question": question, "answer": result}


@api.post("/match", summary="BLIP image-text matching probability of each text")
async def match(image: list[UploadFile] = File(...), text: list[str] = Form(...), s: Service = Depends(service)):
    img = await s.pixels(image, s.models.blip, most=1)
    texts = tuple(forms.texts(text, "text", s.limits))
    probs = (await s.batcher.submit(("match", texts), img))[0]
    return {"results": [{"text": t, "match": p} for t, p in zip(texts, probs)]}


@api.get("/metrics", summary="request counts, status codes, latency, batch sizes, queue depth")
async def metrics(s: Service = Depends(service)):
    b = s.batcher
    return {"endpoints": s.metrics.snapshot(),
            "batch_sizes": {task: {str(size): n for size, n in sorted(c.items())} for task, c in b.batch_sizes.items()},
            "queue": {"depth": b.depth(), "max": b.max_queue},
            "decoding": {"bytes": s.budget.used, "max": s.budget.limit},
            "batching": {"max_batch": b.max_batch, "wait_ms": b.wait_s * 1000}}


@api.get("/image/{id}", summary="an image of the index, by the id /search gave")
async def image_file(id: int, s: Service = Depends(service)):
    path = s.seen.get(id)
    if path is None or not Path(path).is_file():
        raise HTTPException(404, f"no image with id {id}: ids come from /search results")
    return FileResponse(path)


@api.get("/info", summary="the models served and the index size (for the page)")
async def info(s: Service = Depends(service)):
    index = s.models.index
    return {"models": s.models.names(), "index": None if index is None else len(index),
            "dim": s.models.clip.config.embed_dim}


async def healthz():
    # open to anyone, so it says nothing of the server's files or models
    return {"status": "ok", "versions": {"clipblip": __version__, "torch": torch.__version__}}


async def page():
    return FileResponse(STATIC / "index.html")


def create_app(models: Models, limits: Limits = Limits(), max_batch: int = 32, wait_ms: float = 5.0,
               max_queue: int = 256, api_key: str | None = None, allowed_hosts=None) -> FastAPI:
    """The app; its batcher's worker thread starts now and stops (after finishing its queue) at shutdown.
    `api_key`: required in X-API-Key (None: none); `allowed_hosts`: the Host names answered (None: any)."""
    metrics = Metrics()
    # requests the server is still reading may join a batch; with none, a batch need not wait for them
    batcher = Batcher(runner(models), max_batch=max_batch, wait_s=wait_ms / 1000, max_queue=max_queue,
                      arriving=lambda: metrics.in_flight - batcher.submitters)
    s = Service(models, batcher, limits, Budget(limits.max_inflight_bytes), metrics)

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(title="clipblip", summary="CLIP and BLIP as a service: embed, classify, search, caption, ask, "
                                            "match", lifespan=lifespan)
    app.state.service = s
    app.include_router(api)
    app.get("/healthz", summary="liveness and versions")(healthz)
    app.get("/", include_in_schema=False)(page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _error_handlers(app)
    app.add_middleware(Guard, limits=limits, metrics=s.metrics, api_key=api_key, allowed_hosts=allowed_hosts)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error as JSON {"error": message}."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        message = e.detail
        if e.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):  # routing's own words
            message = f"{message}: {request.method} {request.url.path} (the endpoints are listed at /docs)"
        return JSONResponse({"error": message}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in err['loc'][1:]) or err['loc'][0]}: {err['msg']}" for err in e.errors()]
        return JSONResponse({"error": "; ".join(parts)}, 422)

    @app.exception_handler(ClipBlipError)
    async def bad_input(request: Request, e: ClipBlipError):
        return JSONResponse({"error": str(e)}, 422)

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception):  # logged with its traceback by the server; the client gets JSON
        return JSONResponse({"error": f"internal error ({type(e).__name__}); the server keeps serving"}, 500)

    @app.exception_handler(QueueFull)
    async def full(request: Request, e: QueueFull):
        return JSONResponse({"error": f"{e}; retry shortly"}, 503, headers={"Retry-After": "1"})
