"""CLIP guidance: the loss is differentiable and falls, the model's normalization is reproduced, and a short run
on the embedded shapes-clip moves an image toward its prompt."""

import json

import pytest
import torch
from PIL import Image

import clipblip
from clipblip import ClipBlipError
from clipblip.cli import EXIT_ERROR, main
from clipblip.tasks.guidance import PARAMS, ImageParam, cutouts, guidance_loss, normalize, start_image, to_pil

PROMPT = "a red star above a blue circle."


@pytest.fixture(scope="module")
def shapes_clip():
    return clipblip.load("shapes-clip")


def test_normalize_equals_preprocess(tiny_clip, shapes_clip):
    for model in (tiny_clip, shapes_clip):
        s = model.preprocess.size
        x = torch.rand(1, 3, s, s)
        x = (x * 255).round() / 255  # exactly representable as uint8
        np_img = to_pil(x)
        torch.testing.assert_close(normalize(model, x), model.preprocess([np_img]), atol=1e-5, rtol=0)


def test_cutouts_shape_and_full_view():
    x = torch.rand(2, 3, 48, 48)
    assert cutouts(x, 5, 32).shape == (10, 3, 32, 32)
    full = cutouts(x, 1, 48, min_scale=1.0)
    torch.testing.assert_close(full, x)  # the whole image at its own size: unchanged


def test_guidance_loss_is_differentiable_and_falls(tiny_clip):
    x = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    loss = guidance_loss(tiny_clip, x, "a red square", cutn=4, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and 0 <= loss.item() <= 2
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def fixed_loss(img):  # the same cutouts and augmentations each time
        return guidance_loss(tiny_clip, img, "a red square", cutn=4, generator=torch.Generator().manual_seed(1))

    logits = torch.zeros(1, 3, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    before = fixed_loss(torch.sigmoid(logits)).item()
    for step in range(5):
        loss = guidance_loss(tiny_clip, torch.sigmoid(logits), "a red square", cutn=4,
                             generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_loss(torch.sigmoid(logits)).item() < before - 0.01


def test_guidance_loss_without_augmentation_is_hand_cosine_distance(tiny_clip):
    x = torch.rand(2, 3, 32, 32)
    texts = ["a red square", "blue"]
    loss = guidance_loss(tiny_clip, x, texts, cutn=1, min_scale=1.0, noise=0.0, jitter=0.0)
    with torch.no_grad():
        img = torch.nn.functional.normalize(tiny_clip.encode_image(normalize(tiny_clip, x)), dim=-1)
        txt = torch.nn.functional.normalize(tiny_clip.encode_text(tiny_clip.tokenize(texts)), dim=-1)
    assert loss.item() == pytest.approx((1 - (img * txt).sum(-1)).mean().item(), abs=1e-5)
    with pytest.raises(ClipBlipError, match="one text or one per image"):
        guidance_loss(tiny_clip, x, ["a", "b", "c"])


@pytest.mark.parametrize("param", list(PARAMS))
def test_parameterization_starts_at_the_start_image(param):
    start = torch.rand(1, 3, 32, 32)
    image = ImageParam(start, PARAMS[param])
    torch.testing.assert_close(image(), start.clamp(1e-3, 1 - 1e-3), atol=1e-5, rtol=0)
    assert all(p.requires_grad for p in image.parameters())


def test_guide_raises_clip_similarity_and_leaves_model_untouched(shapes_clip):
    dark = Image.new("RGB", (64, 64), (16, 16, 20))
    flags = [p.requires_grad for p in shapes_clip.parameters()]
    with torch.inference_mode():  # the Python API works from inside inference mode too
        result = clipblip.guide(shapes_clip, PROMPT, steps=15, init=dark)
    assert result.size == (64, 64)
    assert clipblip.clipscore(shapes_clip, result, PROMPT) > clipblip.clipscore(shapes_clip, dark, PROMPT) + 0.3
    assert [p.requires_grad for p in shapes_clip.parameters()] == flags
    assert all(p.grad is None for p in shapes_clip.parameters())


def test_start_image_from_file(tmp_path):
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "r.png")
    x = start_image(16, tmp_path / "r.png")
    assert x.shape == (1, 3, 16, 16) and torch.allclose(x[0, 0], torch.ones(16, 16))
    assert start_image(8, None, seed=1).shape == (1, 3, 8, 8)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_guide(tiny_clip_dir, image_folder, tmp_path, capsys):
    out_png = tmp_path / "g.png"
    code, out, _ = run(capsys, "guide", "a red square", "--out", out_png, "--steps", "8", "--size", "40",
                       "--cutn", "2", "-m", tiny_clip_dir, "--json")
    assert code == 0
    result = json.loads(out)
    assert Image.open(out_png).size == (40, 40) and result["clipscore"] > result["clipscore_start"]
    code, _, err = run(capsys, "guide", "x", "--out", tmp_path / "g.txt", "-m", tiny_clip_dir)
    assert code == EXIT_ERROR and "image file name" in err
    code, _, err = run(capsys, "guide", "x", "--out", out_png, "--init", image_folder / "broken.jpg",
                       "--steps", "1", "-m", tiny_clip_dir)
    assert code == EXIT_ERROR and "broken.jpg" in err and "Traceback" not in err
