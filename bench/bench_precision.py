"""The accuracy contract of each precision against fp32 (src/clipblip/eval/precision.py), measured for the README:
the shipped Shapes models over the Shapes test split, and a random BLIP-base-shaped model (ViT-B/16 at 224, BERT-base
text side) on photo-like images.

    .venv/bin/python bench/bench_precision.py [--n 1000 --n-captions 300 --threads 2 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time

import torch

import clipblip
from clipblip.data.shapes_eval import records
from clipblip.eval import precision as P


def shipped(prec: str, n: int, n_captions: int) -> dict:
    single, scenes = records("test", n, n_objects=1), records("test", n)
    out = {}
    for name in ("shapes-clip", "shapes-blip"):
        ref = P.clip_side(clipblip.load(name, device="cpu", precision="fp32"), single, scenes)
        out[name] = P.compare_clip(ref, P.clip_side(clipblip.load(name, device="cpu", precision=prec), single, scenes))
    blip32, blip = (clipblip.load("shapes-blip", device="cpu", precision=p) for p in ("fp32", prec))
    scenes = scenes[:n_captions]
    out["shapes-blip"].update(P.compare_captions(P.caption_side(blip32, scenes), P.caption_side(blip, scenes)))
    v32, v = (P.vqa_side(clipblip.load("shapes-blip-vqa", device="cpu", precision=p), scenes) for p in ("fp32", prec))
    out["shapes-blip-vqa"] = {"vqa_fp32": v32["accuracy"], "vqa": v["accuracy"], "questions": v["n"]}
    return out


def photo_like(n: int, size: int = 224, seed: int = 0) -> list:
    """Smooth colour gradients plus noise: images with the statistics of photos, not of flat test patterns."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 1, (3, 3))
        img = np.stack([a[i] * xx + b[i] * yy + c[i] * xx * yy for i in range(3)], -1)
        img = np.clip(img / img.max() + rng.normal(0, 0.08, img.shape), 0, 1)
        out.append(Image.fromarray((img * 255).astype("uint8")))
    return out


TEXTS = ["a dog running on the beach", "two cups of coffee on a wooden table", "a red car parked by a tree",
         "a man riding a bicycle down a city street", "a plate of food with rice and vegetables",
         "a cat sleeping on a sofa", "mountains covered in snow under a blue sky", "children playing football"]


def blip_base(directory, prec: str, n_images: int) -> dict:
    """ITC embeddings and ITM match probabilities of a random BLIP-base against its fp32 self."""
    images = photo_like(n_images)
    ref, low = (clipblip.load(directory, device="cpu", precision=p) for p in ("fp32", prec))
    img32, img = clipblip.image_features(ref, images), clipblip.image_features(low, images)
    txt32, txt = clipblip.text_features(ref, TEXTS), clipblip.text_features(low, TEXTS)
    m32, m = clipblip.match(ref, images, TEXTS), clipblip.match(low, images, TEXTS)
    return {"image_cosine": P.cosine(img32, img), "text_cosine": P.cosine(txt32, txt),
            "itm_max_abs_diff": float((m32 - m).abs().max())}


def random_blip_base_dir(path) -> str:
    from clipblip.config import BertConfig, BlipConfig, VisionConfig
    from clipblip.image import Preprocess
    from clipblip.models import BLIP

    torch.manual_seed(0)
    cfg = BlipConfig(vision=VisionConfig(image_size=224, patch_size=16, width=768, layers=12, heads=12, mlp_dim=3072,
                                         act="gelu", norm_eps=1e-6, norm_pre=False, patch_bias=True, output_dim=None),
                     text=BertConfig(), image=Preprocess(size=224, resize="squash"), embed_dim=256)
    clipblip.save(BLIP(cfg).eval(), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="Shapes test scenes for embeddings, zero-shot and R@1 "
                    "(and as many single-object ones)")
    ap.add_argument("--n-captions", type=int, default=300, help="the first N of them captioned and questioned")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base-images", type=int, default=8, help="photo-like images for the random BLIP-base")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    start = time.time()
    results = {"cpu": model, "torch": torch.__version__, "python": platform.python_version(), "n": args.n,
               "n_captions": args.n_captions, "precisions": {}}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        base = random_blip_base_dir(tmp)
        for prec in ("bf16", "int8"):
            figures = {**shipped(prec, args.n, args.n_captions),
                       "random blip-base": blip_base(base, prec, args.base_images)}
            results["precisions"][prec] = {name: {**f, "verdicts": P.verdicts(f, prec)} for name, f in figures.items()}
    results["seconds"] = round(time.time() - start, 1)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
