"""Property-based tests of image decoding and preprocessing (hypothesis): any bytes give pixels or a ClipBlipError,
never another exception; any valid image, of any PIL mode and any shape down to 1xN, gives a [3, s, s] uint8 image
whose normalized floats are finite, and no resize pass along the way writes more than
MAX_ASPECT x s x max(short side, s) pixels (the cost bound of clipblip/image.py)."""

import io
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import clipblip.image
from clipblip.errors import ClipBlipError
from clipblip.image import MAX_ASPECT, Preprocess
from resize_spy import recording_resizes

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "F", "CMYK", "YCbCr"]
# Formats that store each mode (Pillow converts or refuses the rest); every image is also passed as a PIL object.
FORMATS = {"1": ["PNG", "TIFF", "BMP"], "L": ["PNG", "JPEG", "TIFF", "WEBP"], "LA": ["PNG", "TIFF"],
           "P": ["PNG", "GIF", "TIFF", "BMP"], "RGB": ["PNG", "JPEG", "TIFF", "BMP", "WEBP"],
           "RGBA": ["PNG", "TIFF", "WEBP"], "I": ["TIFF"], "I;16": ["PNG", "TIFF"], "F": ["TIFF"],
           "CMYK": ["JPEG", "TIFF"], "YCbCr": ["JPEG", "TIFF"]}
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBP"]
# Bytes are cheap to make and dear to decode: a header may declare any size, so the fuzz runs under a small cap.
FUZZ_CAP = 1 << 20
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL"),  # Pillow's notes on corrupt EXIF and TIFF tags
              pytest.mark.filterwarnings("error::RuntimeWarning")]  # numpy's on NaN and overflow: not silent damage

normal_sides = st.integers(1, 300)
long_sides = st.integers(1, 60_000)
shapes = st.one_of(st.tuples(normal_sides, normal_sides), st.tuples(st.just(1), long_sides),
                   st.tuples(long_sides, st.just(1)), st.tuples(st.integers(1, 8), st.integers(1, 3000)))


def _random_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    """Random stored bytes: every bit pattern the mode allows (NaN and infinities in F, negatives in I)."""
    n = len(Image.new(mode, (w, h)).tobytes())
    img = Image.frombytes(mode, (w, h), np.random.default_rng(seed).bytes(n))
    if mode == "P":
        img.putpalette(np.random.default_rng(seed + 1).integers(0, 256, 768, dtype=np.uint8).tobytes())
    return img


def _check_pixels(pre: Preprocess, source, w: int, h: int) -> None:
    with recording_resizes() as written:
        px = pre.uint8(source)
    assert px.shape == (3, pre.size, pre.size) and px.dtype == torch.uint8
    assert torch.isfinite(pre.normalize(px[None])).all()
    assert max(written, default=0) <= MAX_ASPECT * pre.size * max(min(w, h), pre.size)


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(MODES), shape=shapes, seed=st.integers(0, 2**16), size=st.sampled_from([16, 224]),
       resize=st.sampled_from(["shortest", "squash"]), fast=st.booleans())
@example(mode="RGB", shape=(1, 60_000), seed=0, size=224, resize="shortest", fast=False)
@example(mode="L", shape=(60_000, 1), seed=0, size=224, resize="shortest", fast=True)
@example(mode="RGB", shape=(1, 60_000), seed=0, size=224, resize="squash", fast=True)
def test_any_valid_image_gives_bounded_finite_pixels(mode, shape, seed, size, resize, fast):
    w, h = shape
    img = _random_image(mode, w, h, seed)
    pre = Preprocess(size=size, resize=resize, fast=fast)
    _check_pixels(pre, img, w, h)
    fmt = FORMATS[mode][seed % len(FORMATS[mode])]
    if fmt in ("JPEG", "WEBP") and max(w, h) > 16383 or fmt == "GIF" and max(w, h) > 65535:
        return  # past what the format can store
    buf = io.BytesIO()
    img.save(buf, fmt)
    _check_pixels(pre, buf.getvalue(), w, h)


@st.composite
def mutated_files(draw):
    """A small valid file of some format with bytes overwritten, cut short or appended."""
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS[mode]))
    buf = io.BytesIO()
    _random_image(mode, draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(0, 99))).save(buf, fmt)
    data = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))]) + draw(st.binary(max_size=16))


@settings(max_examples=400, deadline=5000)
@given(data=st.one_of(st.builds(lambda m, b: m + b, st.sampled_from(MAGIC), st.binary(max_size=300)),
                      mutated_files()),
       fast=st.booleans())
def test_any_bytes_give_pixels_or_a_clipblip_error(data, fast):
    pre = Preprocess(size=16, fast=fast)
    with mock.patch.object(clipblip.image, "MAX_PIXELS", FUZZ_CAP):
        try:
            px = pre.uint8(data)
        except ClipBlipError as e:
            assert "\n" not in str(e)
            return
    assert px.shape == (3, 16, 16) and px.dtype == torch.uint8
