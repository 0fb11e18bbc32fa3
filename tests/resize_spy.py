"""A spy on every resize pass (PIL's resize, torch's interpolate): the most pixels one pass writes, which is what
bounds the cost of preprocessing an image of extreme shape (image.MAX_ASPECT)."""

import math
from contextlib import contextmanager
from unittest import mock

import torch
from PIL import Image


@contextmanager
def recording_resizes():
    """Yields a list that collects, per resize pass, the pixels it writes. A resize that scales both axes is taken
    to go horizontally first (torch always does, Pillow before 13 did): out width x the rows it reads."""
    written = []
    pil_resize, interpolate = Image.Image.resize, torch.nn.functional.interpolate

    def record(in_w, in_h, out_w, out_h, box):
        both = (out_w, box[0], box[2]) != (in_w, 0, in_w) and (out_h, box[1], box[3]) != (in_h, 0, in_h)
        written.append(out_w * max(out_h, math.ceil(box[3] - box[1]) if both else 0))

    def spy_resize(img, size, resample=None, box=None, *args):
        record(img.width, img.height, size[0], size[1], box or (0, 0, img.width, img.height))
        return pil_resize(img, size, resample, box, *args)

    def spy_interpolate(x, size=None, **kwargs):
        record(x.shape[-1], x.shape[-2], size[1], size[0], (0, 0, x.shape[-1], x.shape[-2]))
        return interpolate(x, size=size, **kwargs)

    with mock.patch.object(Image.Image, "resize", spy_resize), \
            mock.patch.object(torch.nn.functional, "interpolate", spy_interpolate):
        yield written
