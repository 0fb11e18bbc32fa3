"""`make demo`: the checkpoint path and the applications end to end, then `clipblip compare` with the embedded
models trained on the Shapes world (runs/demo/compare/report.html).

Steps 1-9 use random weights, so the labels and captions they print mean nothing; what they show is real: a model
written in the Hugging Face CLIPModel layout is loaded, converted to the native format and back, and used for zero-shot
classification and text-to-image search over a folder of generated images; then a BLIP with every head captions,
answers and matches the same images.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import clipblip
from clipblip.config import BertConfig, BlipConfig, ClipConfig, TextConfig, VisionConfig
from clipblip.export import export_hf
from clipblip.image import Preprocess
from clipblip.models import BLIP, CLIP

SHAPES = {"circle": "ellipse", "square": "rectangle"}
COLORS = ["red", "green", "blue", "yellow"]


def _draw_images(folder: Path) -> list[Path]:
    paths = []
    for shape, method in SHAPES.items():
        for color in COLORS:
            img = Image.new("RGB", (96, 96), "white")
            getattr(ImageDraw.Draw(img), method)((24, 24, 72, 72), fill=color)
            paths.append(folder / f"{color}_{shape}.png")
            img.save(paths[-1])
    return paths


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = ClipConfig(vision=VisionConfig(image_size=64, patch_size=16, width=128, layers=4, heads=4, mlp_dim=512,
                                         output_dim=64),
                     text=TextConfig(width=128, heads=4, layers=4, mlp_dim=512, output_dim=64),
                     image=Preprocess(size=64), embed_dim=64)
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    (out / "images").mkdir(parents=True, exist_ok=True)
    export_hf(CLIP(cfg).eval(), out / "clip-random-hf")
    print(f"1. wrote a random-weight CLIP in the Hugging Face layout: {out / 'clip-random-hf'}")
    model = clipblip.load(out / "clip-random-hf", precision="fp32")  # fp32: the conversion is shown lossless
    print("2. loaded it with clipblip.load (the test suite checks this path against transformers itself)")
    clipblip.save(model, out / "clip-random")
    again = clipblip.load(out / "clip-random", precision="fp32")
    same = all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    print(f"3. converted to the native format ({out / 'clip-random'}) and back: weights identical = {same}")
    paths = _draw_images(out / "images")
    start = time.perf_counter()
    results = clipblip.classify(again, paths, [f"{c} {s}" for c in COLORS for s in SHAPES], top_k=2)
    print(f"4. zero-shot over {len(paths)} images in {time.perf_counter() - start:.2f}s "
          "(random weights: the labels are arbitrary)")
    for path, top in list(zip(paths, results))[:3]:
        print(f"   {path.name:<16} -> " + ", ".join(f"{label} {p:.2f}" for label, p in top))
    feats = clipblip.image_features(again, paths)
    hits = clipblip.text_to_image(again, ["a green square"], feats, top_k=3)[0]
    print("5. search 'a green square': " + ", ".join(f"{paths[i].name} {s:.3f}" for i, s in hits))
    _blip_part(out, paths)
    print("10. clipblip compare with the embedded Shapes models (CLIP vs BLIP on the same test splits):")
    from clipblip.cli import main as cli

    # fp32: the comparison of record gives the same figures on every machine ("auto" is bf16 on some; what that
    # changes is the README's accuracy-per-precision table)
    code = cli(["compare", "--n", "200", "--precision", "fp32", "--out", str(out / "compare")])
    if code != 0:
        raise SystemExit(code)
    print(f"Try the CLI on them: clipblip classify {out / 'images'} --labels 'red circle' 'blue square' "
          f"-m {out / 'clip-random'}")


def _blip_part(out: Path, paths: list[Path]) -> None:
    """A random BLIP with every head (pretraining layout), through the same steps: caption, VQA, ITM."""
    cfg = BlipConfig(vision=VisionConfig(image_size=64, patch_size=16, width=128, layers=4, heads=4, mlp_dim=512,
                                         act="gelu", norm_eps=1e-6, norm_pre=False, patch_bias=True,
                                         output_dim=None),
                     text=BertConfig(width=128, heads=4, layers=4, mlp_dim=512, cross_width=128),
                     image=Preprocess(size=64, resize="squash"), embed_dim=64)
    clipblip.save(BLIP(cfg).eval(), out / "blip-random")
    blip = clipblip.load(out / "blip-random")
    print(f"6. wrote and loaded a random-weight BLIP (encoder, decoder, ITC, ITM): {out / 'blip-random'}")
    start = time.perf_counter()
    captions = clipblip.caption(blip, paths[:2], num_beams=3, max_new_tokens=8)
    print(f"7. beam-search captions in {time.perf_counter() - start:.2f}s: {captions}")
    print(f"8. VQA, ranked: {clipblip.answer(blip, paths[:1], ['what color?'], candidates=COLORS)[0][:2]}")
    print(f"9. ITM match probability, 1 image x 2 texts: {clipblip.match(blip, paths[:1], ['a red circle', 'a cat'])}")


if __name__ == "__main__":
    main()
