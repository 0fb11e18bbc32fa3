"""CLIP ViT-B/32 towers, ours vs transformers' CLIPModel, same random weights, fp32, one process.

    python bench/bench_towers.py [--threads N]

Image tower at batch 32 (throughput) and batch 1 (latency); text tower on 77-token texts and on short captions
(the tokenizer pads to 77; EOT pooling lets us cut the padding, HF runs all 77 positions).
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from common import compare, define_torchvision_ops, machine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    define_torchvision_ops()
    from transformers import CLIPConfig, CLIPModel

    import clipblip

    torch.manual_seed(0)
    hf = CLIPModel(CLIPConfig()).eval()  # defaults = ViT-B/32 shapes
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = clipblip.load(d, device="cpu", precision="fp32")
    captions = ["a photo of a dog", "two red circles left of a blue square", "a cat on a mat",
                "an aerial view of a city at night with many lights"] * 8
    short = ours.tokenize(captions)
    long_ = torch.randint(0, 49406, (32, 77))
    long_[:, 0], long_[:, -1] = 49406, 49407
    cases = {
        "image tower, batch 32": (lambda: hf.get_image_features(pixel_values=px32),
                                  lambda: ours.encode_image(px32)),
        "image tower, batch 1": (lambda: hf.get_image_features(pixel_values=px1), lambda: ours.encode_image(px1)),
        "text tower, 32 x 77 tokens": (lambda: hf.get_text_features(input_ids=long_),
                                       lambda: ours.encode_text(long_)),
        "text tower, 32 short captions": (lambda: hf.get_text_features(input_ids=short),
                                          lambda: ours.encode_text(short)),
    }
    px32, px1 = torch.randn(32, 3, 224, 224), torch.randn(1, 3, 224, 224)
    print(f"# {machine()}")
    print("| case | transformers ms | clipblip ms | speed-up |\n|---|---|---|---|")
    with torch.inference_mode():
        for name, (theirs, mine) in cases.items():
            t_hf, t_ours = compare(theirs, mine, args.repeat)
            print(f"| {name} | {t_hf * 1e3:.1f} | {t_ours * 1e3:.1f} | {t_hf / t_ours:.2f}x |")


if __name__ == "__main__":
    main()
