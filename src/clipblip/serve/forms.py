"""Request limits and the checks on what clients send: every bad input becomes an HTTPException with a message
that says what to send instead (the app turns it into a JSON {"error": ...}).

Images are checked from their header (format, pixel count) and admitted by the memory their decoding takes
(`admission.Budget`) before any is decoded; each is then reduced at once to the model's input, uint8 [3, S, S]
(`Preprocess.uint8`, the library's own decoding and preprocessing), so that what a request holds while it waits
for the model is bounded by the model's input size, whatever the image's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import torch
from fastapi import HTTPException, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import ClipBlipError
from ..image import Preprocess
from .admission import Budget, decoded_bytes

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# Formats PIL decodes itself; others are refused from the header (EPS, for one, would run Ghostscript)
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 * 2**20  # a whole request, uploads included
    max_items: int = 32  # texts, images, labels or candidate answers in one request
    max_text_chars: int = 1000
    max_pixels: int = 40_000_000  # a guard against decompression bombs well below PIL's own (89M)
    max_inflight_bytes: int = 512 * 2**20  # decoding images, all requests together (admission.Budget)
    body_timeout_s: float = 60.0  # from the end of the headers to the end of the body
    header_timeout_s: float = 10.0  # from a connection's start (or its last answer) to a whole request head
    max_connections: int = 64  # open at once; beyond it uvicorn answers 503

    def __post_init__(self):
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"Limits.{f.name} must be above 0, got {getattr(self, f.name)!r}")


def unprocessable(message: str) -> HTTPException:
    return HTTPException(422, message)


async def known_fields(request: Request) -> None:
    """Dependency: the body is a form and names only the fields the endpoint declares."""
    route = request.scope.get("route")
    allowed = sorted(p.alias for p in route.dependant.body_params) if route else []
    if not allowed:
        return
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in FORM_TYPES:
        raise HTTPException(415, f"send the fields as multipart/form-data (got {kind or 'no content type'}); "
                                 f"this endpoint takes: {', '.join(allowed)}")
    form = await request.form()  # parsed once; FastAPI reuses it
    unknown = sorted(set(form.keys()) - set(allowed))
    if unknown:
        raise unprocessable(f"unknown field(s) {', '.join(map(repr, unknown))}; this endpoint takes: "
                            f"{', '.join(allowed)}")


def texts(values: list[str] | None, field: str, limits: Limits, least: int = 1) -> list[str]:
    """Non-empty texts, each at most max_text_chars, between `least` and max_items of them."""
    values = list(values or [])
    count(values, field, limits, least)
    for i, t in enumerate(values):
        if not t.strip():
            raise unprocessable(f"{field} #{i + 1} is empty: give some text")
        if len(t) > limits.max_text_chars:
            raise unprocessable(f"{field} #{i + 1} has {len(t)} characters; the limit is {limits.max_text_chars}")
    return values


def count(values: list, field: str, limits: Limits, least: int = 1, most: int | None = None) -> None:
    most = limits.max_items if most is None else most
    if len(values) < least:
        raise unprocessable(f"give at least {least} {field!r} field(s)")
    if len(values) > most:
        raise unprocessable(f"too many {field!r} fields: {len(values)}, the limit is {most} per request")


async def images(files: list | None, limits: Limits, pre: Preprocess, budget: Budget, least: int = 1,
                 most: int | None = None) -> list[torch.Tensor]:
    """The `image` uploads reduced to the model's input, uint8 [3, S, S] each (`pre.uint8`, off the event loop),
    once their headers have passed the checks and their decoding has been admitted by `budget`."""
    files = list(files or [])
    count(files, "image", limits, least, most)
    uploads = []
    for f in files:
        if not isinstance(f, UploadFile):
            raise unprocessable("'image' must be a file upload (multipart/form-data), not a text field")
        uploads.append((f.filename or "upload", await f.read()))
    cost = sum(probe(data, name, limits) for name, data in uploads)
    with budget.hold(cost):  # one image at a time: the cost counted is an upper bound on the request's peak
        return [await run_in_threadpool(reduce, data, name, pre) for name, data in uploads]


def probe(data: bytes, name: str, limits: Limits) -> int:
    """The bytes decoding `data` takes, from its header alone; 422 for a format not accepted or a size over the
    pixel cap. 0 when there is no readable header: decoding then fails at once, and says why in its own words."""
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            (w, h), mode, kind = im.size, im.mode, im.format
    except Exception:  # not an image, or a bomb PIL refuses outright
        return 0
    if kind not in IMAGE_FORMATS:
        raise unprocessable(f"image {name!r} is {kind}, a format the server does not read: send one of "
                            f"{', '.join(IMAGE_FORMATS)}")
    if w * h > limits.max_pixels:
        raise unprocessable(f"image {name!r} is {w}x{h} = {w * h} pixels; the limit is {limits.max_pixels}")
    return decoded_bytes(w, h, mode)


def reduce(data: bytes, name: str, pre: Preprocess) -> torch.Tensor:
    try:
        return pre.uint8(data)
    except ClipBlipError as e:
        raise unprocessable(f"image {name!r}: {e}") from None
