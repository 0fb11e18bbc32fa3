"""`clipblip`: one entry point, a subcommand per task.

Exit codes: 0 all done; 1 an error (one line on stderr, no traceback); 2 bad usage; 3 done, but some inputs
were skipped (each listed on stderr, or under "skipped" with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ClipBlipError

EXIT_ERROR, EXIT_PARTIAL = 1, 3


def _model(args):
    import torch

    from . import load

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.model, arch=args.arch)
    if args.fast:
        from dataclasses import replace

        model.preprocess = replace(model.preprocess, fast=True)
    return model


def _listed(items, path) -> list[str]:
    """Items given on the command line, then the non-empty lines of `path` (if any)."""
    out = list(items or [])
    if path:
        try:
            out += [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        except OSError as e:
            raise ClipBlipError(f"cannot read {path}: {e.strerror}") from None
    return out


def _report(result: dict, skipped, as_json: bool, lines) -> int:
    """Print the result (JSON or text lines) and the skipped items; the exit code says whether any were skipped."""
    if as_json:
        print(json.dumps({**result, "skipped": [{"item": i, "error": e} for i, e in skipped.items]}, indent=2))
    else:
        for line in lines:
            print(line)
    for item, error in skipped.items:
        print(f"skipped {item}: {error}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} input(s) skipped", file=sys.stderr)
    return EXIT_PARTIAL if skipped else 0


def cmd_models(args) -> int:
    from . import catalog, hub

    rows = [{"name": name, "family": family, "arch": "shapes", "hub_id": None, "format": "native",
             "cached": True, "embedded": True} for name, family in catalog.EMBEDDED.items()
            if catalog.embedded(name) and args.family in (None, family)]
    for name in catalog.names(args.family):
        e = catalog.get(name)
        rows.append({"name": name, "family": e.family, "arch": e.arch, "hub_id": e.hub_id, "format": e.format,
                     "cached": hub.is_cached(e)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            where = "embedded" if r.get("embedded") else "cached" if r["cached"] else ""
            print(f"{r['name']:<48} {r['family']:<5} {r['hub_id'] or '-':<52} {where}")
    return 0


def cmd_embed(args) -> int:
    import torch

    from .tasks.inputs import Skipped, find_images, image_features, text_features

    texts = _listed(args.texts, args.texts_file)
    images = find_images(args.images) if args.images else []
    if not texts and not images:
        raise ClipBlipError("nothing to embed: give --images and/or --texts / --texts-file")
    out = Path(args.output)
    if out.suffix not in (".safetensors", ".npy"):
        raise ClipBlipError(f"output {out} must end in .safetensors or .npy")
    if out.suffix == ".npy" and texts and images:
        raise ClipBlipError("a .npy file holds one array: embed images and texts to separate files, or use .safetensors")
    model = _model(args)
    tensors, meta, skipped = {}, {}, Skipped()
    if images:
        feats, kept, skipped = image_features(model, images, args.batch_size, skip_bad=True, progress=True)
        tensors["image_features"], meta["images"] = feats, [str(images[i]) for i in kept]
    if texts:
        tensors["text_features"], meta["texts"] = text_features(model, texts, progress=True), texts
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        import numpy as np

        (name, array), = tensors.items()
        np.save(out, array.numpy())
        out.with_suffix(".json").write_text(json.dumps(meta, indent=1))  # which row is which
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    return _report({"output": str(out), "shapes": shapes}, skipped, args.json,
                   [f"wrote {out}: " + ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())])


def cmd_classify(args) -> int:
    from .tasks.inputs import find_images, image_features
    from .tasks.zeroshot import class_embeddings, scores, top_labels

    labels = _listed(args.labels, args.labels_file)
    images = find_images(args.images)
    model = _model(args)
    class_feats = class_embeddings(model, labels, args.templates)
    feats, kept, skipped = image_features(model, images, args.batch_size, skip_bad=True, progress=True)
    results = top_labels(scores(model, feats, class_feats), labels, args.top_k)
    rows = [{"image": str(images[i]), "labels": [{"label": lab, "prob": p} for lab, p in r]}
            for i, r in zip(kept, results)]
    lines = [f"{row['image']}: " + ", ".join(f"{x['label']} {x['prob']:.3f}" for x in row["labels"]) for row in rows]
    return _report({"results": rows}, skipped, args.json, lines)


def cmd_search(args) -> int:
    from .tasks.inputs import Skipped, find_images, image_features
    from .tasks.retrieval import text_to_image

    images = find_images(args.images)
    model = _model(args)
    if args.rerank:
        from .tasks.itm import image_tokens, rerank_text_to_image

        _require_blip(model, "--rerank")
        skipped = Skipped()
        tokens, feats, kept = image_tokens(model, images, args.batch_size, True, skipped, progress=True)
        hits = rerank_text_to_image(model, args.queries, tokens, feats, args.top_k)
    else:
        feats, kept, skipped = image_features(model, images, args.batch_size, skip_bad=True, progress=True)
        hits = text_to_image(model, args.queries, feats, args.top_k)
    rows = [{"query": q, "hits": [{"image": str(images[kept[j]]), "score": s} for j, s in h]}
            for q, h in zip(args.queries, hits)]
    lines = []
    for row in rows:
        lines += [f"{row['query']}:"] + [f"  {h['score']:.4f}  {h['image']}" for h in row["hits"]]
    return _report({"results": rows}, skipped, args.json, lines)


def _require_blip(model, what: str) -> None:
    if model.config.family != "blip":
        raise ClipBlipError(f"{what} needs a BLIP model (see `clipblip models --family blip`)")


def cmd_caption(args) -> int:
    from .generate import GenerationConfig
    from .tasks.caption import captions
    from .tasks.inputs import Skipped, find_images

    images = find_images(args.images)
    model = _model(args)
    _require_blip(model, "caption")
    t = model.config.text
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                           num_beams=args.beams, top_p=args.top_p, temperature=args.temperature,
                           repetition_penalty=args.repetition_penalty, seed=args.seed, eos_id=t.sep_id, pad_id=t.pad_id)
    skipped = Skipped()
    rows = [{"image": str(images[i]), "caption": text}
            for i, text in captions(model, images, cfg, args.prompt, args.batch_size, skipped, progress=True)]
    return _report({"results": rows}, skipped, args.json, [f"{r['image']}: {r['caption']}" for r in rows])


def cmd_ask(args) -> int:
    from .tasks.inputs import Skipped
    from .tasks.vqa import answer

    model = _model(args)
    _require_blip(model, "ask")
    candidates = _listed(args.answers, args.answers_file)
    result = answer(model, [args.image], [args.question], candidates=candidates or None, num_beams=args.beams)[0]
    if candidates:
        ranked = [{"answer": a, "prob": p} for a, p in result[: args.top_k]]
        return _report({"question": args.question, "answers": ranked}, Skipped(), args.json,
                       [f"{r['answer']} {r['prob']:.3f}" for r in ranked])
    return _report({"question": args.question, "answer": result}, Skipped(), args.json, [result])


def cmd_match(args) -> int:
    from .tasks.inputs import Skipped
    from .tasks.itm import match

    model = _model(args)
    _require_blip(model, "match")
    probs = match(model, [args.image], args.texts)[0]
    rows = [{"text": t, "match": float(p)} for t, p in zip(args.texts, probs)]
    return _report({"image": args.image, "results": rows}, Skipped(), args.json,
                   [f"{r['match']:.4f}  {r['text']}" for r in rows])


def cmd_convert(args) -> int:
    from . import load, save
    from .export import export_hf
    from .tasks.inputs import Skipped

    model = load(args.source, arch=args.arch)
    if args.parts and args.to != "hf":
        raise ClipBlipError("--parts picks the Hugging Face BLIP class to export to: use it with --to hf")
    out = export_hf(model, args.output, args.parts) if args.to == "hf" else save(model, args.output)
    return _report({"output": str(out), "format": args.to}, Skipped(), args.json, [f"wrote {args.to} model to {out}"])


def _common(p: argparse.ArgumentParser, model: str | None = "clip") -> None:
    """Shared options; `model` is the family whose embedded model is the default (None: no --model)."""
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if model:
        from .catalog import DEFAULT

        p.add_argument("--model", "-m", default=DEFAULT[model],
                       help=f"checkpoint path, directory, or catalog name (default: the embedded {DEFAULT[model]})")
        p.add_argument("--arch", help="architecture of a bare open_clip file, e.g. ViT-B-32")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
        p.add_argument("--fast", action="store_true", help="fast JPEG decode (DCT downscale; see docs)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipblip", description="CLIP and BLIP: models, checkpoints, applications")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list the catalog of known releases")
    p.add_argument("--family", choices=["clip", "blip"])
    _common(p, model=None)
    p.set_defaults(run=cmd_models)
    p = sub.add_parser("embed", help="embed images and/or texts to .safetensors or .npy")
    p.add_argument("--images", nargs="+", help="image files or directories")
    p.add_argument("--texts", nargs="+")
    p.add_argument("--texts-file", help="one text per line")
    p.add_argument("--output", "-o", required=True)
    _common(p)
    p.set_defaults(run=cmd_embed)
    p = sub.add_parser("classify", help="zero-shot classification")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--labels", nargs="+")
    p.add_argument("--labels-file", help="one class name per line")
    p.add_argument("--templates", nargs="+", help="prompt templates with {} for the label")
    p.add_argument("--top-k", type=int, default=5)
    _common(p)
    p.set_defaults(run=cmd_classify)
    p = sub.add_parser("search", help="text-to-image search over a folder")
    p.add_argument("queries", nargs="+")
    p.add_argument("--images", nargs="+", required=True, help="image files or directories")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--rerank", action="store_true", help="BLIP: rerank the ITC shortlist with the ITM head")
    _common(p)
    p.set_defaults(run=cmd_search)
    p = sub.add_parser("caption", help="BLIP: caption images")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=30)
    p.add_argument("--min-new-tokens", type=int, default=0)
    p.add_argument("--top-p", type=float, help="nucleus sampling")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--prompt", help="e.g. 'a picture of ' (left out of the output)")
    _common(p, model="blip")
    p.set_defaults(run=cmd_caption)
    p = sub.add_parser("ask", help="BLIP: answer a question about an image")
    p.add_argument("image")
    p.add_argument("question")
    p.add_argument("--answers", nargs="+", help="candidate answers to rank (BLIP's rank mode)")
    p.add_argument("--answers-file", help="one candidate answer per line")
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--top-k", type=int, default=5)
    _common(p, model="vqa")
    p.set_defaults(run=cmd_ask)
    p = sub.add_parser("match", help="BLIP: image-text matching probability")
    p.add_argument("image")
    p.add_argument("texts", nargs="+")
    _common(p, model="blip")
    p.set_defaults(run=cmd_match)
    p = sub.add_parser("convert", help="write a checkpoint in the native (or Hugging Face) format")
    p.add_argument("source")
    p.add_argument("output")
    p.add_argument("--to", choices=["native", "hf"], default="native")
    p.add_argument("--parts", nargs="+", choices=["encoder", "decoder", "itc", "itm"],
                   help="BLIP to HF: the heads to export (decoder: captioning; encoder itc itm: retrieval; "
                        "encoder decoder: VQA)")
    p.add_argument("--arch", help="architecture of a bare open_clip file")
    _common(p, model=None)
    p.set_defaults(run=cmd_convert)
    from .eval.cli import add_parser as add_compare
    from .train.cli import add_parser as add_train

    add_compare(sub, _common)
    add_train(sub, _common)
    from .tasks.capfilt_cli import add_parser as add_capfilt

    add_capfilt(sub, _common)
    from .data.cli import add_parsers

    add_parsers(sub)
    from .guide_cli import add_parsers as add_guidance

    add_guidance(sub, _common)
    from .index.cli import add_parser as add_index

    add_index(sub, _common)
    from .serve.cli import add_parser as add_serve

    add_serve(sub, _common)
    return ap


def main(argv=None) -> int:
    import torch

    args = parser().parse_args(argv)
    try:
        if getattr(args, "grad", False):
            return args.run(args)
        with torch.inference_mode():
            return args.run(args)
    except ClipBlipError as e:
        print(f"clipblip: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # an output path that cannot be written, a full disk
        print(f"clipblip: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("clipblip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
