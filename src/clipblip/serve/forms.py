"""Request limits and the checks on what clients send: every bad input becomes an HTTPException with a message
that says what to send instead (the app turns it into a JSON {"error": ...})."""

from __future__ import annotations

import io
from dataclasses import dataclass

from fastapi import HTTPException, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import ClipBlipError
from ..image import load_image

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 * 2**20  # a whole request, uploads included
    max_items: int = 32  # texts, images, labels or candidate answers in one request
    max_text_chars: int = 1000
    max_pixels: int = 40_000_000  # a guard against decompression bombs well below PIL's own (89M)


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


async def images(files: list | None, limits: Limits, least: int = 1,
                 most: int | None = None) -> list[Image.Image]:
    """Decoded RGB images of the `image` uploads (decoded off the event loop)."""
    files = list(files or [])
    count(files, "image", limits, least, most)
    out = []
    for f in files:
        if not isinstance(f, UploadFile):
            raise unprocessable("'image' must be a file upload (multipart/form-data), not a text field")
        out.append(await run_in_threadpool(decode, await f.read(), f.filename or "upload", limits))
    return out


def decode(data: bytes, name: str, limits: Limits) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            w, h = probe.size
    except Exception:  # not an image, or a bomb PIL refuses outright: load_image says which in its own words
        w = h = 0
    if w * h > limits.max_pixels:
        raise unprocessable(f"image {name!r} is {w}x{h} = {w * h} pixels; the limit is {limits.max_pixels}")
    try:
        return load_image(data)
    except ClipBlipError as e:
        raise unprocessable(f"image {name!r}: {e}") from None
