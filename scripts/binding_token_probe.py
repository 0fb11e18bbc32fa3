"""Where the binding experiment fails: do a BLIP model's image tokens carry each object's shape and colour at the
object's own place, what ITM's cross-attention would have to read to bind them?

A linear probe (logistic regression, standardised features) on the ViT token of the patch under each
object's centre, fitted on the objects of Shapes train scenes and scored on those of test scenes. High accuracy
for both means the binding information is in the image tokens, so a model that scores attribute swaps at chance
fails in what its text side learns to read, not in what its image tower encodes.

    .venv/bin/python scripts/binding_token_probe.py shapes-blip runs/binding/D/model [--train 1500 --test 500]
"""

from __future__ import annotations

import argparse

import torch

import clipblip
from clipblip.data.shapes import COLORS, SHAPES, ShapesWorld, as_scene, centre

SIZE = 64  # Shapes images, as the shipped models read them


def centre_tokens(model, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [objects, W], shape ids, colour ids) for every object of scenes 0..n-1 of `split`."""
    world, feats, shapes, colors = ShapesWorld(0), [], [], []
    for start in range(0, n, 64):
        samples = [world.sample(split, i) for i in range(start, min(n, start + 64))]
        with torch.no_grad():
            tokens = model.image_tokens(model.preprocess([s["image"] for s in samples]))  # [B, 1 + patches, W]
        side = round((tokens.shape[1] - 1) ** 0.5)  # patches per row
        patch = SIZE / side
        for b, s in enumerate(samples):
            scene = as_scene(s["scene"])
            cell = SIZE / scene.grid
            for o in scene.objects:
                x, y = centre(o, cell)
                feats.append(tokens[b, 1 + int(y // patch) * side + int(x // patch)].float())
                shapes.append(SHAPES.index(o.shape))
                colors.append(COLORS.index(o.color))
    return torch.stack(feats), torch.tensor(shapes), torch.tensor(colors)


def probe_accuracy(x_train, y_train, x_test, y_test, classes: int, steps: int = 500) -> float:
    torch.manual_seed(0)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    linear = torch.nn.Linear(x_train.shape[1], classes)
    opt = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(linear((x_train - mean) / std), y_train).backward()
        opt.step()
    with torch.no_grad():
        return float((linear((x_test - mean) / std).argmax(1) == y_test).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="BLIP model sources (anything clipblip.load reads)")
    p.add_argument("--train", type=int, default=1500, help="train scenes the probe is fitted on")
    p.add_argument("--test", type=int, default=500, help="test scenes it is scored on")
    args = p.parse_args()
    for source in args.models:
        model = clipblip.load(source, device="cpu", precision="fp32").eval()
        x_tr, s_tr, c_tr = centre_tokens(model, "train", args.train)
        x_te, s_te, c_te = centre_tokens(model, "test", args.test)
        majority = float((s_te == s_te.mode().values).float().mean())
        print(f"{source}: {len(x_tr)} train / {len(x_te)} test objects; shape "
              f"{probe_accuracy(x_tr, s_tr, x_te, s_te, len(SHAPES)):.1%} (majority class {majority:.1%}), colour "
              f"{probe_accuracy(x_tr, c_tr, x_te, c_te, len(COLORS)):.1%}", flush=True)


if __name__ == "__main__":
    main()
