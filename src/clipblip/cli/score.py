"""`clipblip score`, `clipblip rerank`, `clipblip guide`: CLIPScore, reranking candidates, CLIP guidance."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ClipBlipError
from .common import add_common, load_model, report


def cmd_score(args) -> int:
    from ..jobs import Skipped
    from ..tasks.score import Pair, read_pairs, score_pairs

    if bool(args.set) == (args.image is not None) or (args.image is not None and args.prompt is None):
        raise ClipBlipError("give IMAGE PROMPT for one pair, or --set FILE|FOLDER for many (not both)")
    if args.set:
        pairs, skipped = read_pairs(args.set)
        if args.refs:
            raise ClipBlipError("--refs is for one pair; give a set's references in its file (see --help)")
    else:
        pairs, skipped = [Pair(args.image, args.prompt, list(args.refs or []))], Skipped()
    model = load_model(args)
    if not args.set:  # one pair: an unreadable image is an error, not a skip
        from ..image import load_image

        load_image(args.image)
    result = score_pairs(model, pairs, args.w, args.prefix, args.batch_size, skipped, progress=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**result, "skipped": [{"item": i, "error": e} for i, e in skipped.items]},
                                  indent=1))
    lines = [f"{it['clipscore']:.4f}" + (f"  ref {it['refclipscore']:.4f}" if "refclipscore" in it else "")
             + f"  {it['image']}" for it in result["items"]] if not args.set else []
    if result["n"]:
        lines.append(f"CLIPScore {result['clipscore']:.4f} (mean of {result['n']}, w={args.w})")
    if "refclipscore" in result:
        lines.append(f"RefCLIPScore {result['refclipscore']:.4f} (mean of {result['n_with_references']})")
    if args.out:
        lines.append(f"wrote {args.out}")
    return report(result, skipped, args.json, lines)


def cmd_rerank(args) -> int:
    from ..catalog import DEFAULT
    from ..jobs import Skipped, find_images
    from ..tasks.score import rerank

    images = find_images(args.images)
    if not images:
        raise ClipBlipError("no images to rerank: give image files or folders that hold some")
    args.model = args.model or DEFAULT["blip" if args.by == "itm" else "clip"]
    model = load_model(args)
    skipped = Skipped()
    ranked = rerank(model, args.prompt, images, args.by, args.top, args.batch_size, skipped)
    rows = [{"rank": r + 1, "image": str(images[i]), "score": s} for r, (i, s) in enumerate(ranked)]
    return report({"prompt": args.prompt, "by": args.by, "results": rows}, skipped, args.json,
                   [f"{r['rank']:>3}  {r['score']:.4f}  {r['image']}" for r in rows])


def cmd_guide(args) -> int:
    from ..jobs import Skipped
    from ..tasks.guidance import guide, start_image, to_pil
    from ..tasks.score import clipscore

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        raise ClipBlipError(f"--out {out} must be an image file name (.png, .jpg, .webp, .bmp)")
    model = load_model(args)
    size = args.size or model.preprocess.size
    losses: list[float] = []
    image = guide(model, args.prompt, steps=args.steps, size=size, init=args.init, param=args.param, lr=args.lr,
                  cutn=args.cutn, seed=args.seed, progress=True, losses=losses)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    before = clipscore(model, to_pil(start_image(size, args.init, args.seed)), args.prompt)
    after = clipscore(model, image, args.prompt)
    result = {"output": str(out), "prompt": args.prompt, "steps": args.steps, "clipscore_start": before,
              "clipscore": after, "loss": losses[-1] if losses else None}
    return report(result, Skipped(), args.json,
                   [f"wrote {out}: CLIPScore to the prompt {before:.3f} -> {after:.3f} after {args.steps} steps"])


def add_parsers(sub) -> None:
    p = sub.add_parser("score", help="CLIPScore / RefCLIPScore of images and their prompts (Hessel et al. 2021)")
    p.add_argument("image", nargs="?", help="one image (with PROMPT)")
    p.add_argument("prompt", nargs="?", help="its prompt or caption")
    p.add_argument("--refs", nargs="+", help="reference texts of the one pair: adds RefCLIPScore")
    p.add_argument("--set", metavar="PATH", help="many pairs: a JSONL {image, prompt, references}, a CSV (image, "
                   "prompt, references joined by '|') or a folder of images with a .txt beside each (first line "
                   "the prompt, further lines references)")
    p.add_argument("--out", help="write every pair's scores and the means to this JSON file")
    p.add_argument("--w", type=float, default=2.5, help="CLIPScore's weight w (default 2.5, as the paper)")
    p.add_argument("--prefix", default="", help="text put before every prompt (the paper used 'A photo depicts ')")
    add_common(p)
    p.set_defaults(run=cmd_score)
    p = sub.add_parser("rerank", help="order candidate images for a prompt by CLIP similarity or BLIP ITM")
    p.add_argument("prompt")
    p.add_argument("images", nargs="+", help="candidate image files or folders")
    p.add_argument("--by", choices=["clip", "itm"], default="clip",
                   help="clip: cosine similarity (any CLIP, or BLIP's ITC); itm: BLIP's match probability; the "
                        "default --model follows it: shapes-clip for clip, shapes-blip for itm")
    p.add_argument("--top", type=int, help="keep the best K")
    add_common(p)
    p.set_defaults(run=cmd_rerank, model=None)  # the default model follows --by
    p = sub.add_parser("guide", help="steer an image toward a prompt with CLIP guidance")
    p.add_argument("prompt")
    p.add_argument("--out", "-o", required=True, help="the image to write (.png, .jpg, ...)")
    p.add_argument("--steps", type=int, default=150, help="Adam steps on the image")
    p.add_argument("--size", type=int, help="image side in pixels (default: the model's input size)")
    p.add_argument("--init", help="start image (default: gray with a little noise)")
    p.add_argument("--param", choices=["pixels", "lowres", "pyramid"], default="pyramid",
                   help="the image's parameterization: full-resolution offsets, one coarse grid, or a pyramid")
    p.add_argument("--lr", type=float, default=0.1, help="Adam's learning rate on the image's parameters")
    p.add_argument("--cutn", type=int, default=8, help="random crops per step")
    p.add_argument("--seed", type=int, default=0, help="seed of the start image's noise and the random crops")
    add_common(p)
    p.set_defaults(run=cmd_guide, grad=True)  # autograd: runs outside inference_mode
