"""Robust image decoding and the CLIP/BLIP preprocessing, numerically equal to the training-time references.

`load_image` turns a path, bytes or a PIL image into an RGB PIL image (EXIF orientation applied) or raises
`ClipBlipError` naming the file. `Preprocess` turns images into the normalized [B, 3, size, size] float32 batch.

Exactness. In exact mode (`fast=False`) the "shortest" output equals OpenAI CLIP / open_clip's
`Resize(size, bicubic) -> CenterCrop(size) -> ToTensor -> Normalize` on the same RGB image (both resize with PIL
in C, as we do), and "squash" equals BLIP's `Resize((size, size), bicubic)`. Where the references disagree:

- Crop offset: torchvision's CenterCrop uses `round((h - c) / 2)` (Python rounds half to even); Hugging Face's
  `center_crop` floors. They differ by one pixel when `h - c` is 3 mod 4 (e.g. a 231x224 resize). We follow
  torchvision, the training-time transform.
- Resampling arithmetic: transformers 5's default `CLIPImageProcessor`/`BlipImageProcessor` resize a float
  tensor with torch's antialiased kernel; PIL rounds to uint8 between its two passes. On photo-like content they
  differ by at most 2/255, in under 0.1% of values (by 1/255 in a few percent). Its PIL backend
  (`CLIPImageProcessorPil`, the numerics of transformers 4) equals ours apart from the crop offset above.
- Pass order: Pillow 13 resamples some shapes vertically first (PR #9549, "if height is scaled down significantly
  more than width"); older Pillow always went horizontally first. Where that applies (seen for 233x500 -> 224x480,
  not for 480x640 -> 224x298) results move by up to 2/255 on photos between Pillow versions. "Equal to open_clip"
  means with the same Pillow, which is why we resize with Pillow rather than imitate it.
- Alpha: transformers 5 composites transparency onto white; OpenAI/open_clip call PIL `convert('RGB')`, which
  drops alpha and keeps the stored colour of transparent pixels. We drop it as they do.
- Mode order: OpenAI/open_clip resize first and convert to RGB last, so a palette image is resized with NEAREST
  (PIL forces it for "P"), RGBA with premultiplied alpha and 16-bit grayscale is clipped at 255. We convert to
  RGB at decode, so every mode is resampled as RGB; results equal theirs for RGB and L inputs.

Fast path (`fast=True`): a JPEG file or bytes is decoded by libjpeg's DCT-domain downscale (`Image.draft`, by
1/2, 1/4 or 1/8) to the smallest size whose short side is still >= `size`, and every image is resized with
torch's antialiased uint8 kernel (2-4x faster than PIL's; within 1-2/255 of it on photos, its weights have less
precision). Against exact mode, in [0, 1] units before normalization, on photo-like quality-90 JPEGs from
300x300 to 4000x3000 (bench/README.md): max abs difference <= 0.05, mean <= 0.005 (measured at most 0.031 and
0.0042; 0.028 / 0.0042 at 640x480, 0.016 / 0.0023 at 1920x1080). PIL's `reducing_gap` is not used: after the
draft the remaining scale factor is under 2 for images up to 16x `size`, where it would change nothing.

Cost bound. A file may declare at most `MAX_PIXELS` pixels (and no more than Pillow's own MAX_IMAGE_PIXELS, when
that is set); it is refused from its header, before anything is decoded. After the decode, no resize pass writes
more than MAX_ASPECT x size x max(short side, size) pixels, whatever the shape (tests/test_image_properties.py):
an image whose long side is over MAX_ASPECT times its short side (a 1x21800 strip would otherwise resize to
224 x 4.9M pixels before the crop) is cropped before it is resized (`_resize_region`): the part the output shows
is resampled straight to size x size with Pillow's `box`, in two one-axis passes, the long side first, in both
modes and in the fast path. That output is not bit-equal to the references' resize-then-crop (Pillow keeps the
box in float32 and the pass order can differ): within 2/255 on photo-like content (tests/test_image.py), where
the references would take seconds and gigabytes. Exact mode decodes every pixel (a JPEG draft would change the
result); the fast path's draft also bounds the decode of a large JPEG.
"""

from __future__ import annotations

import errno
import io
import math
import os
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ClipBlipError
from .files import ITEM_LIMIT_ENV, item_limit, read_bounded

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_RESIZE_MODES = ("shortest", "squash")
# The most pixels a file may declare: Pillow's default MAX_IMAGE_PIXELS (~0.36 GB decoded, 4 bytes a pixel), held
# here too because training scripts often set Pillow's to None to silence its warning, which would lift ours.
# Raise it (and Pillow's) for trusted files.
MAX_PIXELS = 89_478_485
# Past this aspect ratio an image is cropped before it is resized (see "Cost bound" in the module docstring). 16
# keeps wide panoramas (8:1 and the like) on the references' exact resize-then-crop.
MAX_ASPECT = 16


# ----------------------------------------------------------------------------------------------------- decoding


def load_image(source, *, draft_size: int | None = None) -> Image.Image:
    """An RGB PIL image, EXIF orientation applied, from a path (str/Path), bytes, or a PIL image.

    Every PIL mode is accepted; alpha is dropped with PIL `convert('RGB')` (as OpenAI CLIP and open_clip do);
    16-bit and 32-bit grayscale are scaled to 8 bit (see `_high_depth_to_uint8`). A file that is missing, empty,
    not an image, truncated, or larger than `MAX_PIXELS` (or Pillow's MAX_IMAGE_PIXELS, if lower) raises
    `ClipBlipError` naming it; the size is checked from the header, before the pixels are decoded.
    `draft_size`: for a JPEG file or bytes, decode at 1/2, 1/4 or 1/8 scale in the DCT domain while the short
    side stays >= draft_size; ignored for other formats and for PIL images (the caller's object is not changed).
    A truncated file still decodes when the caller has set `PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`.
    """
    name = _describe(source)
    try:
        if isinstance(source, Image.Image):
            source.load()
            return _to_rgb(_apply_exif_orientation(source), name)
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ClipBlipError(f"cannot read image {name}: the data is empty (0 bytes)")
            return _decode(io.BytesIO(source), name, draft_size)
        if isinstance(source, (str, os.PathLike)):
            # a regular file within the item cap: a FIFO would block forever, /dev/zero never ends
            data = read_bounded(source, item_limit())
            if not data:
                raise ClipBlipError(f"cannot read image {name}: the file is empty (0 bytes)")
            return _decode(io.BytesIO(data), name, draft_size)
    except ClipBlipError:
        raise
    except Exception as e:  # PIL plugins raise a zoo of types on bad input (OSError, SyntaxError, struct.error...)
        raise ClipBlipError(f"cannot read image {name}: {_reason(e)}") from e
    raise ClipBlipError(
        f"cannot read image {name}: expected a path, bytes or a PIL image, got {type(source).__name__}"
    )


def _decode(fp, name: str, draft_size: int | None) -> Image.Image:
    # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS; make that an error too. Warning filters are
    # process-global and catch_warnings is not thread-safe: racing threads can leave this one filter behind
    # (harmless) or drop it, which the explicit size check below covers.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(fp)
    _check_pixel_limit(img.size, name)
    if draft_size is not None and img.format in ("JPEG", "MPO"):  # MPO: multi-picture JPEG
        # draft picks the largest scale s in (8, 4, 2, 1) with s <= min(w // d, h // d): both sides stay >= d.
        img.draft("RGB", (draft_size, draft_size))
    img.load()
    return _to_rgb(_apply_exif_orientation(img), name)


def _check_pixel_limit(size: tuple[int, int], name: str) -> None:
    pil = Image.MAX_IMAGE_PIXELS
    limit, knob = ((pil, "PIL.Image.MAX_IMAGE_PIXELS") if pil is not None and pil < MAX_PIXELS
                   else (MAX_PIXELS, "clipblip.image.MAX_PIXELS"))
    if size[0] * size[1] > limit:
        raise ClipBlipError(
            f"cannot read image {name}: {size[0]}x{size[1]} = {size[0] * size[1]} pixels is over the limit of "
            f"{limit} ({knob}, a guard against decompression bombs); raise that limit if you trust the file"
        )


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # unreadable EXIF: the pixels are still good, keep them as stored
        return img
    # exif_transpose copies even when nothing changes; call it only for a real rotation or flip.
    return ImageOps.exif_transpose(img) if orientation in range(2, 9) else img


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    if img.width == 0 or img.height == 0:  # a PIL image may be 0 pixels wide; no crop or resize can use it
        raise ClipBlipError(f"cannot read image {name}: it has no pixels ({img.width}x{img.height})")
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        # PIL's own conversion of these modes clips at 255 instead of scaling.
        gray = _high_depth_to_uint8(np.asarray(img), img.mode)
        return Image.fromarray(gray).convert("RGB")  # 2-D uint8 -> mode L
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise ClipBlipError(f"cannot read image {name}: PIL cannot convert mode {img.mode!r} to RGB") from e


def _high_depth_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit grayscale -> uint8, scaled, never clipped.

    I;16*: the full 16-bit range, v * 255 / 65535 rounded. I (int32) and F (float32) carry no declared range,
    so it is read from the values: F within [0, 1] is scaled by 255; values within [0, 255] are kept; within
    [0, 65535] (16-bit data decoded as I) they are scaled as 16 bit; anything else is stretched min..max.
    Non-finite values become 0.
    """
    if mode.startswith("I;16"):
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    with np.errstate(invalid="ignore"):  # a signalling NaN warns as it is cast; it becomes 0 on the next line
        x = a.astype(np.float64)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        x = x * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif lo >= 0.0 and hi <= 65535.0:
        x = x * (255.0 / 65535.0)
    else:
        x = (x - lo) * (255.0 / ((hi - lo) or 1.0))  # a constant image (hi == lo) becomes 0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return repr(filename) if filename else f"<PIL image {source.mode} {source.width}x{source.height}>"
    return f"<{type(source).__name__}>"


def _reason(e: Exception) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "it is a directory, not an image file"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, OSError) and e.errno in (errno.EINVAL, errno.EFBIG) and e.filename is not None:
        return e.strerror + (f"; if you trust it, raise ${ITEM_LIMIT_ENV}" if e.errno == errno.EFBIG else "")
    if isinstance(e, UnidentifiedImageError):
        return "not an image, or a format PIL cannot read"
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"{e} (PIL.Image.MAX_IMAGE_PIXELS guards against decompression bombs; raise it if you trust the file)"
    if isinstance(e, (OSError, EOFError, SyntaxError)):
        return f"truncated or corrupt image data ({e})"
    return f"cannot decode it ({type(e).__name__}: {e})"


# ------------------------------------------------------------------------------------------------ preprocessing


def _shortest_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    # torchvision's Resize(int) and HF's get_resize_output_image_size agree: the long side is floored.
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _center_crop_offset(length: int, size: int) -> int:
    # torchvision CenterCrop: round half to even; HF floors, one pixel less when length - size is 3 mod 4.
    return int(round((length - size) / 2.0))


def _resize_torch(img: Image.Image, target: tuple[int, int], interpolation: str) -> torch.Tensor:
    """uint8 [3, h, w] resized by torch's antialiased uint8 kernel: 2-4x faster than PIL's, within 1-2/255 of it
    on photos (fixed-point weights of lower precision, horizontal pass always first). The fast path only."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0)  # channels-last strides, as it likes
    if img.size != target:
        x = torch.nn.functional.interpolate(x, size=(target[1], target[0]), mode=interpolation, antialias=True)
    return x[0]


def _resize_region(img: Image.Image, box, size: int, resample) -> Image.Image:
    """`box` (x0, y0, x1, y1) of `img` resampled to size x size in two passes, the long side first: the first pass
    writes short side x size pixels and reads only the box's rows (or columns), whatever the image's shape."""
    x0, y0, x1, y1 = box
    if img.height >= img.width:
        img, y0, y1 = _cut(img, y0, y1, size, vertical=True)
        img = img.resize((img.width, size), resample, box=(0, y0, img.width, y1))
        return img.resize((size, size), resample, box=(x0, 0, x1, size))
    img, x0, x1 = _cut(img, x0, x1, size, vertical=False)
    img = img.resize((size, img.height), resample, box=(x0, 0, x1, img.height))
    return img.resize((size, size), resample, box=(0, y0, size, y1))


def _cut(img: Image.Image, start: float, end: float, size: int, vertical: bool):
    """The rows (or columns) that resampling [start, end) to `size` reads, and the span's coordinates in them.

    Pillow holds a box in float32, whole pixels off at 1e7: handed a cut-out, it gets small coordinates (its
    result moves by float32 rounding only). The filter's support (2 for bicubic) stretches by the downscale factor.
    """
    length = img.height if vertical else img.width
    margin = math.ceil(2 * max((end - start) / size, 1.0)) + 1
    a, b = max(0, math.floor(start) - margin), min(length, math.ceil(end) + margin)
    if (a, b) == (0, length):  # all of it ("squash"): a copy would cost as much as the image
        return img, start, end
    return img.crop((0, a, img.width, b) if vertical else (a, 0, b, img.height)), start - a, end - a


def _as_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as uint8 [3, height, width]."""
    # bytearray: a writable buffer, which torch.frombuffer wants.
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.height, img.width, 3).permute(2, 0, 1)


@dataclass(frozen=True)
class Preprocess:
    """Images -> normalized float32 [B, 3, size, size].

    resize "shortest": short side to `size` then center crop (CLIP). "squash": straight to size x size (BLIP).
    fast: JPEG draft decode + torch resize; max abs <= 0.05, mean <= 0.005 from exact mode in [0, 1] units on
    photos (see the module docstring). Exact mode equals open_clip / BLIP's transform on the same RGB image.
    """

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize: str = "shortest"
    fast: bool = False

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ClipBlipError(f"Preprocess size must be a positive int, got {self.size!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ClipBlipError(f"Preprocess needs 3 means and 3 positive stds, got {self.mean} and {self.std}")
        if self.interpolation not in _RESAMPLE:
            raise ClipBlipError(
                f"Preprocess interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}"
            )
        if self.resize not in _RESIZE_MODES:
            raise ClipBlipError(f"Preprocess resize must be one of {_RESIZE_MODES}, got {self.resize!r}")

    def __call__(self, images) -> torch.Tensor:
        """One image or a list of PIL images / paths / bytes; a preprocessed [B,3,s,s] or [3,s,s] tensor passes."""
        if isinstance(images, torch.Tensor):
            return self._pass_through(images)
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.float32)
        return self.normalize(torch.stack([self.uint8(item) for item in items]))

    def uint8(self, image) -> torch.Tensor:
        """One image decoded, resized and cropped: contiguous uint8 [3, size, size]. The half of preprocessing
        that decoding threads run: Pillow's work, and no float op that would start an OpenMP team per thread."""
        draft = self.size if self.fast else None
        # contiguous: the float conversion in `normalize` is ~25% faster from it than from a strided view
        return self._pixels(load_image(image, draft_size=draft)).contiguous()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, size, size] from `uint8` -> float32 (x / 255 - mean) / std, as one multiply-add per value."""
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        return pixels.to(torch.float32).mul_(1.0 / (255.0 * std)).sub_(mean / std)

    def _pixels(self, img: Image.Image) -> torch.Tensor:
        """Resized and cropped uint8 [3, size, size]."""
        s = self.size
        if max(img.size) > MAX_ASPECT * min(img.size):
            return _as_tensor(_resize_region(img, self._region(img), s, _RESAMPLE[self.interpolation]))
        target = (s, s) if self.resize == "squash" else _shortest_side_size(img.width, img.height, s)
        left, top = _center_crop_offset(target[0], s), _center_crop_offset(target[1], s)
        if self.fast:
            return _resize_torch(img, target, self.interpolation)[:, top : top + s, left : left + s]
        if img.size != target:  # torchvision skips the resize too when the size already matches
            img = img.resize(target, _RESAMPLE[self.interpolation])
        if target != (s, s):
            img = img.crop((left, top, left + s, top + s))
        return _as_tensor(img)

    def _region(self, img: Image.Image) -> tuple[float, float, float, float]:
        """The part of `img` the output shows, in its own pixel coordinates: all of it for "squash", for "shortest"
        the source of the centre crop that resize-then-crop would keep."""
        w, h, s = img.width, img.height, self.size
        if self.resize == "squash":
            return 0.0, 0.0, float(w), float(h)
        tw, th = _shortest_side_size(w, h, s)
        left, top = _center_crop_offset(tw, s), _center_crop_offset(th, s)
        return left * w / tw, top * h / th, (left + s) * w / tw, (top + s) * h / th

    def _pass_through(self, t: torch.Tensor) -> torch.Tensor:
        s = self.size
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4 or tuple(t.shape[1:]) != (3, s, s) or not t.is_floating_point():
            raise ClipBlipError(
                f"a tensor passed to Preprocess must be preprocessed float pixels of shape [B, 3, {s}, {s}] or "
                f"[3, {s}, {s}], got {tuple(t.shape)} {t.dtype}; pass PIL images, paths or bytes to preprocess"
            )
        return t

    def to_dict(self) -> dict:
        """JSON-safe (tuples as lists), for config.json."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ClipBlipError(f"unknown preprocessing keys {unknown}; known: {sorted(known)}")
        return cls(**d)
