"""Image decoding and preprocessing: parity with open_clip / transformers / BLIP's transform, every PIL mode,
the errors a user can cause, the tensor pass-through and the JPEG draft fast path."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import clipblip.image
from _torchvision_shim import import_open_clip
from clipblip.errors import ClipBlipError
from clipblip.image import OPENAI_MEAN, OPENAI_STD, Preprocess, load_image
from resize_spy import recording_resizes

MEAN = torch.tensor(OPENAI_MEAN).view(3, 1, 1)
STD = torch.tensor(OPENAI_STD).view(3, 1, 1)

# odd/even, landscape/portrait, long side 3 mod 4 past 224 (231, 227, 311: the crop offsets disagree),
# smaller than 224 (upscaling), wide aspect ratios up to MAX_ASPECT, exactly 224.
SIZES = [(640, 480), (480, 640), (225, 224), (227, 224), (224, 231), (231, 300), (591, 823), (300, 227),
         (100, 80), (50, 300), (1000, 120), (233, 500), (223, 223), (224, 224), (7, 5), (16, 256), (1, 1)]
# Past MAX_ASPECT: cropped before the resize, close to the references but not bit-equal.
EXTREME = [(3, 400), (400, 3), (17, 300), (1000, 40), (1, 500)]


def _image(w, h, seed=0, smooth=False):
    """Gradient + noise. Smooth: no clipping at 0/255 and mild noise, like photo content; otherwise harsh."""
    rng = np.random.default_rng(seed + 7 * w + h)
    y, x = np.mgrid[0:h, 0:w]
    if smooth:
        base = np.stack([x * 150 / w, y * 150 / h, (x + y) * 75 / (w + h)], -1) + 50
        noisy = base + rng.normal(0, 12, (h, w, 3))
    else:
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
        noisy = base + rng.normal(0, 40, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _unit(pixels):
    """Normalized [3,s,s] or [1,3,s,s] -> [3,s,s] in [0, 1] units."""
    return pixels.reshape(-1, *pixels.shape[-3:])[0] * STD + MEAN


def _crop_offsets(w, h, size=224):
    nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return (nw - size) / 2, (nh - size) / 2


def _offsets_agree(w, h):
    """torchvision rounds the crop offset (half to even), HF floors: the same for these sizes?"""
    return all(int(round(d)) == int(d) for d in _crop_offsets(w, h))


@pytest.fixture(scope="module")
def open_clip():
    return import_open_clip()


@pytest.fixture(scope="module")
def hf():
    import_open_clip()  # transformers' image processors import torchvision
    from transformers import BlipImageProcessor, CLIPImageProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return {
        "clip": CLIPImageProcessor(),
        "clip_pil": CLIPImageProcessorPil(),
        "blip": BlipImageProcessor(size={"height": 384, "width": 384}),
    }


# ---------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("w,h", SIZES)
def test_shortest_equals_open_clip_transform(open_clip, w, h):
    img = _image(w, h)
    ref = open_clip.image_transform(224, is_train=False)(img)
    ours = Preprocess()(img)
    assert ours.shape == (1, 3, 224, 224) and ours.dtype == torch.float32
    assert (ours[0] - ref).abs().max().item() < 1e-5  # same PIL resize, same crop: equal up to float rounding


def test_bilinear_equals_open_clip_transform(open_clip):
    for w, h in [(640, 480), (231, 300), (50, 300)]:
        img = _image(w, h)
        ref = open_clip.image_transform(224, is_train=False, interpolation="bilinear")(img)
        assert (Preprocess(interpolation="bilinear")(img)[0] - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("w,h", [s for s in SIZES if s != (3, 400)])  # HF float64 numpy: slow on 224x29866
def test_shortest_vs_hf_pil_backend_differs_only_by_the_crop_offset(hf, w, h):
    """transformers' PIL backend resizes as we do but floors the crop offset; torchvision rounds half to even."""
    img = _image(w, h)
    ours = _unit(Preprocess()(img))
    ref = _unit(hf["clip_pil"](img, return_tensors="pt")["pixel_values"])
    dx, dy = _crop_offsets(w, h)
    shift_x, shift_y = int(round(dx)) - int(dx), int(round(dy)) - int(dy)  # ours minus HF: 0 or 1
    if shift_x or shift_y:  # long side 3 mod 4 past 224: HF's window sits one pixel earlier
        assert (ours - ref).abs().max().item() > 0.1
    overlap_ref = ref[:, shift_y:, shift_x:]
    overlap_ours = ours[:, : 224 - shift_y, : 224 - shift_x]
    assert (overlap_ours - overlap_ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("w,h", [s for s in SIZES if _offsets_agree(*s)])
def test_shortest_close_to_hf_clip_image_processor(hf, w, h):
    """transformers 5's default processor resizes a float tensor (torch antialias); PIL rounds between passes.

    On photo-like content that is within 1/255 nearly everywhere, 2/255 at most (sizes where the crop offsets
    agree; where they do not, see the test above)."""
    img = _image(w, h, smooth=True)
    diff = (_unit(Preprocess()(img)) - _unit(hf["clip"](img, return_tensors="pt")["pixel_values"])).abs()
    assert diff.max().item() <= 2 / 255 + 1e-5
    assert (diff > 1 / 255 + 1e-5).float().mean().item() < 1e-3


@pytest.mark.parametrize("w,h", [(640, 480), (384, 384), (100, 700), (385, 383), (1000, 120)])
def test_squash_matches_blip(hf, open_clip, w, h):
    import torchvision.transforms as T

    img = _image(w, h)
    ours = Preprocess(size=384, resize="squash")(img)
    blip = T.Compose([T.Resize((384, 384), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                      T.Normalize(OPENAI_MEAN, OPENAI_STD)])(img)  # BLIP's own (Salesforce) eval transform
    assert (ours[0] - blip).abs().max().item() < 1e-5
    smooth = _image(w, h, smooth=True)
    diff = (_unit(Preprocess(size=384, resize="squash")(smooth))
            - _unit(hf["blip"](smooth, return_tensors="pt")["pixel_values"])).abs()
    assert diff.max().item() <= 2 / 255 + 1e-5
    assert (diff > 1 / 255 + 1e-5).float().mean().item() < 1e-3


def test_batch_mixes_sources_and_matches_single_images(tmp_path):
    img = _image(300, 200)
    path = tmp_path / "a.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    batch = Preprocess()([img, str(path), buf.getvalue(), path])
    assert batch.shape == (4, 3, 224, 224)
    for row in batch[1:]:
        assert torch.equal(row, batch[0])
    assert Preprocess()([]).shape == (0, 3, 224, 224)


# ---------------------------------------------------------------------------------------------------- decoding


def _save(img, path, **kw):
    img.save(path, **kw)
    return path


def test_palette_with_transparency_keeps_the_palette_colour(tmp_path):
    pal = Image.new("P", (30, 20), 0)
    pal.putpalette([200, 10, 20] + [0, 0, 255] * 255)
    pal.paste(1, (0, 0, 10, 20))
    out = load_image(_save(pal, tmp_path / "p.png", transparency=0))
    assert out.mode == "RGB" and out.size == (30, 20)
    assert out.getpixel((25, 5)) == (200, 10, 20)  # transparent index: colour kept, not white
    assert out.getpixel((2, 5)) == (0, 0, 255)


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = Image.new("RGBA", (8, 6), (10, 20, 30, 0))
    out = load_image(_save(rgba, tmp_path / "a.png"))
    assert out.mode == "RGB" and out.getpixel((3, 3)) == (10, 20, 30)
    la = Image.new("LA", (8, 6), (77, 0))
    assert load_image(_save(la, tmp_path / "la.png")).getpixel((1, 1)) == (77, 77, 77)


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    out = load_image(_save(cmyk, tmp_path / "c.jpg", quality=95))
    r, g, b = out.getpixel((16, 8))
    assert out.mode == "RGB" and out.size == (32, 16) and r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 30000, 65535, 40000]], dtype=np.uint16).repeat(3, axis=0)
    path = _save(Image.fromarray(values), tmp_path / "g16.png")
    with Image.open(path) as stored:
        assert stored.mode == "I;16"
    out = np.asarray(load_image(path))
    assert out.shape == (3, 6, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 4, 117, 255, 156])  # round(v * 255 / 65535)
    assert (out[..., 0] == out[..., 2]).all()


@pytest.mark.parametrize(
    "array,expected",
    [
        (np.array([[0, 1000, 65535]], dtype=">u2"), [0, 4, 255]),  # I;16B
        (np.array([[0, 128, 255]], dtype=np.int32), [0, 128, 255]),  # I holding 8-bit data: kept
        (np.array([[0, 1000, 65535]], dtype=np.int32), [0, 4, 255]),  # I holding 16-bit data
        (np.array([[-10, 0, 90]], dtype=np.int32), [0, 26, 255]),  # I outside both: stretched
        (np.array([[-5, -5, -5]], dtype=np.int32), [0, 0, 0]),  # constant: no division by zero
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), [0, 128, 255]),  # F in [0, 1]
        (np.array([[-1.0, 0.0, 1.0]], dtype=np.float32), [0, 128, 255]),  # F outside: stretched
    ],
)
def test_high_depth_modes(array, expected):
    out = np.asarray(load_image(Image.fromarray(array)))
    np.testing.assert_array_equal(out[0, :, 1], expected)


def test_one_bit_and_grayscale(tmp_path):
    bw = Image.new("1", (10, 4), 0)
    bw.putpixel((3, 1), 1)
    out = load_image(_save(bw, tmp_path / "b.png"))
    assert out.getpixel((3, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 0)
    gray = Image.new("L", (10, 4), 99)
    assert load_image(_save(gray, tmp_path / "g.jpg", quality=100)).getpixel((5, 2)) == (99, 99, 99)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # stored: red left half, blue right half
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    out = load_image(_save(stored, tmp_path / "rot.jpg", exif=exif, quality=95))
    assert out.size == (20, 40)
    assert out.getpixel((10, 5))[0] > 200 and out.getpixel((10, 35))[2] > 200  # red on top, blue below


# ------------------------------------------------------------------------------------------------------ errors


def _jpeg_bytes(w=64, h=48):
    buf = io.BytesIO()
    _image(w, h).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _assert_error(source, *words):
    with pytest.raises(ClipBlipError) as info:
        load_image(source)
    message = str(info.value)
    for word in words:
        assert word in message, message


def test_truncated_empty_and_non_image_files(tmp_path):
    data = _jpeg_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a picture\n")
    _assert_error(tmp_path / "cut.jpg", "cut.jpg", "truncated")
    _assert_error(str(tmp_path / "empty.jpg"), "empty.jpg", "empty")
    _assert_error(tmp_path / "text.jpg", "text.jpg", "not an image")
    _assert_error(tmp_path / "missing.jpg", "missing.jpg", "no such file")
    _assert_error(data[:100], "<100 bytes>")
    _assert_error(b"", "empty")
    _assert_error(12, "expected a path, bytes or a PIL image")
    _assert_error(Image.new("RGB", (0, 5)), "no pixels", "0x5")
    with pytest.raises(ClipBlipError, match="cut.jpg"):
        Preprocess()([_image(30, 30), tmp_path / "cut.jpg"])


def test_decompression_bombs_are_errors(tmp_path, monkeypatch):
    _save(_image(40, 40), tmp_path / "warn.png")  # 1600 pixels: PIL only warns between 1x and 2x the limit
    _save(_image(100, 100), tmp_path / "bomb.png")  # 10000 pixels: PIL raises
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _assert_error(tmp_path / "warn.png", "warn.png", "1600", "MAX_IMAGE_PIXELS")
    _assert_error(tmp_path / "bomb.png", "bomb.png", "MAX_IMAGE_PIXELS")


def test_pixel_cap_holds_when_pillow_guard_is_off(tmp_path, monkeypatch):
    path = _save(_image(40, 40), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as many training scripts do
    monkeypatch.setattr(clipblip.image, "MAX_PIXELS", 1000, raising=False)  # raising: the old code had none
    _assert_error(path, "big.png", "1600", "clipblip.image.MAX_PIXELS")
    _assert_error(path.read_bytes(), "1600 pixels")


# ----------------------------------------------------------------------------------- extreme aspect ratios


@pytest.mark.parametrize("w,h", EXTREME)
@pytest.mark.parametrize("resize", ["shortest", "squash"])
def test_extreme_aspect_ratio_is_cropped_first_and_close_to_the_reference(open_clip, w, h, resize):
    """Resize-then-crop would write 224 x 29866 pixels for 3x400 (squashing 1x500, 384 x 500); cropped first, no
    pass writes more than short side x size, and the result stays within 2/255 of the references' on photo-like
    content."""
    import torchvision.transforms as T

    img = _image(w, h, smooth=True)
    size = 224 if resize == "shortest" else 384
    ref = (open_clip.image_transform(size, is_train=False)(img) if resize == "shortest" else T.Compose(
        [T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
         T.Normalize(OPENAI_MEAN, OPENAI_STD)])(img))
    with recording_resizes() as written:
        for fast in (False, True):
            ours = Preprocess(size=size, resize=resize, fast=fast)(img)
            assert ours.shape == (1, 3, size, size)
            assert ((ours[0] - ref) * STD).abs().max().item() <= 2 / 255 + 1e-5
    assert max(written) <= max(min(w, h), size) * size


def test_one_pixel_wide_strip_shows_its_centre():
    """1 x 2,000,001: resize-then-crop would write 224 x 448M pixels; the crop is the strip's centre rows."""
    column = np.random.default_rng(0).integers(0, 256, (2_000_001, 1, 3), dtype=np.uint8)
    column[1_000_000 - 4 : 1_000_000 + 5] = (200, 30, 90)  # the centre row and the filter's reach around it
    with recording_resizes() as written:
        for resize, fast in (("shortest", False), ("shortest", True)):
            out = Preprocess(resize=resize, fast=fast).uint8(Image.fromarray(column))
            assert out.shape == (3, 224, 224) and (out == torch.tensor([200, 30, 90]).view(3, 1, 1)).all()
    assert max(written) <= 224 * 224


# -------------------------------------------------------------------------------------- tensors and config


def test_tensor_pass_through_checks_shape():
    pre = Preprocess(size=32)
    batch = torch.randn(2, 3, 32, 32)
    assert pre(batch) is batch
    assert pre(batch[0]).shape == (1, 3, 32, 32)
    for bad in (torch.randn(2, 3, 31, 32), torch.randn(2, 1, 32, 32), torch.zeros(3, 32, 32, dtype=torch.uint8)):
        with pytest.raises(ClipBlipError, match=r"\[B, 3, 32, 32\]"):
            pre(bad)


def test_config_round_trip_and_validation():
    pre = Preprocess(size=384, resize="squash", interpolation="bilinear", fast=True)
    d = json.loads(json.dumps(pre.to_dict()))
    assert isinstance(d["mean"], list) and Preprocess.from_dict(d) == pre
    with pytest.raises(ClipBlipError, match="unknown"):
        Preprocess.from_dict({**d, "crop": 1})
    for bad in ({"interpolation": "nearest"}, {"resize": "pad"}, {"size": 0}, {"std": (1, 0, 1)}):
        with pytest.raises(ClipBlipError):
            Preprocess(**bad)


def test_package_never_imports_torchvision():
    code = "import sys, clipblip.image; assert 'torchvision' not in sys.modules, 'torchvision imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- fast path


def _photo_jpeg(path, w, h, seed=0):
    """Smooth colour blobs + gradient + mild noise, quality 90 (the bench's content)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 225, (h // 60 + 2, w // 60 + 2, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    noisy = field + np.linspace(-20, 20, w)[None, :, None] + rng.normal(0, 8, (h, w, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def test_draft_decodes_large_jpeg_smaller(tmp_path):
    path = _photo_jpeg(tmp_path / "big.jpg", 1600, 1200)
    assert load_image(path).size == (1600, 1200)
    assert load_image(path, draft_size=224).size == (400, 300)  # 1/4: the short side stays >= 224
    assert load_image(path.read_bytes(), draft_size=300).size == (400, 300)
    assert load_image(path, draft_size=301).size == (800, 600)
    png = _save(_image(600, 500), tmp_path / "big.png")
    assert load_image(png, draft_size=224).size == (600, 500)  # not a JPEG: ignored


@pytest.mark.parametrize("w,h", [(1600, 1200), (640, 480), (480, 640), (1000, 300)])
def test_fast_path_stays_within_documented_tolerance(tmp_path, w, h):
    path = _photo_jpeg(tmp_path / "photo.jpg", w, h)
    for resize, size in (("shortest", 224), ("squash", 384)):
        exact = Preprocess(size=size, resize=resize)(path)
        fast = Preprocess(size=size, resize=resize, fast=True)(path)
        diff = ((fast - exact) * STD).abs()
        assert 0 < diff.mean().item() <= 0.005 and diff.max().item() <= 0.05  # the documented bound


def test_a_path_that_is_no_regular_file_is_refused_unread(tmp_path):
    """A FIFO would block the reader forever and /dev/zero never ends: both are refused before any read (an
    alarm turns a hang of the old code into a failure)."""
    import os
    import signal

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)

    def hung(signum, frame):
        raise TimeoutError("load_image blocked")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        for path, kind in ((fifo, "FIFO"), ("/dev/zero", "character device")):
            with pytest.raises(ClipBlipError, match=f"not a regular file but a {kind}"):
                load_image(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
