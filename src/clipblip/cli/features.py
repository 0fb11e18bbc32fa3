"""`clipblip embed`, `classify`, `search`: embeddings and what is done with them (any CLIP, or BLIP's ITC)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ClipBlipError
from .common import add_common, add_workers, listed, load_model, report, require_blip


def cmd_embed(args) -> int:
    from ..jobs import find_images

    texts = listed(args.texts, args.texts_file)
    images = find_images(args.images) if args.images else []
    if not texts and not images:
        raise ClipBlipError("nothing to embed: give --images and/or --texts / --texts-file")
    if args.format in (None, "safetensors"):
        return _embed_file(args, images, texts)
    return _embed_folder(args, images, texts)


def _embed_file(args, images, texts) -> int:
    from ..jobs import Skipped
    from ..tasks.inputs import image_features, text_features

    out = Path(args.output)
    if out.suffix not in (".safetensors", ".npy") or (args.format == "safetensors" and out.suffix != ".safetensors"):
        raise ClipBlipError(f"output {out} must end in .safetensors (or .npy), or give --format npy|parquet to "
                            "write a folder of shards")
    if out.suffix == ".npy" and texts and images:
        raise ClipBlipError("a .npy file holds one array: embed images and texts to separate files, "
                            "or use .safetensors")
    model = load_model(args)
    tensors, meta, skipped = {}, {}, Skipped()
    if images:
        feats, kept, skipped = image_features(model, images, args.batch_size, skip_bad=True, progress=True,
                                              workers=args.workers)
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
        from ..files import save_safetensors

        save_safetensors({k: v.contiguous() for k, v in tensors.items()}, out,
                         metadata={k: json.dumps(v) for k, v in meta.items()})
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    return report({"output": str(out), "shapes": shapes}, skipped, args.json,
                  [f"wrote {out}: " + ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())])


def _embed_folder(args, images, texts) -> int:
    from ..data.embeddings import model_name, plan, write_embeddings

    out = Path(args.output)
    if out.suffix in (".safetensors", ".npy", ".parquet"):
        raise ClipBlipError(f"--format {args.format} writes a folder of shards: give --output a folder name, not "
                            f"{out.name}")
    job = plan(out, images, texts, name=model_name(args.model), format=args.format, shard_size=args.shard_size)
    w = write_embeddings(load_model(args), job, batch_size=args.batch_size, workers=args.workers, progress=True)
    result = {"output": str(out), "format": w.format, "rows": w.rows, "shards": w.shards,
              "embedded_shards": w.embedded, "reused_shards": w.reused}
    line = (f"wrote {out}: {w.rows['image']} image and {w.rows['text']} text embeddings in "
            f"{sum(w.shards.values())} {w.format} shards ({w.embedded} embedded now, {w.reused} by an earlier run)")
    return report(result, w.skipped, args.json, [line])


def cmd_classify(args) -> int:
    from ..jobs import find_images
    from ..tasks.inputs import image_features
    from ..tasks.zeroshot import class_embeddings, scores, top_labels

    labels = listed(args.labels, args.labels_file)
    images = find_images(args.images)
    model = load_model(args)
    class_feats = class_embeddings(model, labels, args.templates)
    feats, kept, skipped = image_features(model, images, args.batch_size, skip_bad=True, progress=True,
                                          workers=args.workers)
    results = top_labels(scores(model, feats, class_feats), labels, args.top_k)
    rows = [{"image": str(images[i]), "labels": [{"label": lab, "prob": p} for lab, p in r]}
            for i, r in zip(kept, results)]
    lines = [f"{row['image']}: " + ", ".join(f"{x['label']} {x['prob']:.3f}" for x in row["labels"]) for row in rows]
    return report({"results": rows}, skipped, args.json, lines)


# What a hit's score is, stated beside the scores: the rerank's sum reads like a probability and is not one.
SCALES = {"itc": "cosine similarity of the text and image embeddings (-1 to 1)",
          "rerank": "ITM match logit + ITC cosine similarity, BLIP's retrieval ranking (a sum of two scales, not a "
                    "probability: `clipblip match` gives ITM match probabilities)"}


def cmd_search(args) -> int:
    from ..jobs import Skipped, find_images
    from ..tasks.inputs import image_features
    from ..tasks.retrieval import text_to_image

    images = find_images(args.images)
    model = load_model(args)
    if args.rerank:
        from ..tasks.itm import image_tokens, rerank_text_to_image

        require_blip(model, "--rerank")
        skipped = Skipped()
        tokens, feats, kept = image_tokens(model, images, args.batch_size, True, skipped, progress=True,
                                           workers=args.workers)
        hits = rerank_text_to_image(model, args.queries, tokens, feats, args.top_k)
    else:
        feats, kept, skipped = image_features(model, images, args.batch_size, skip_bad=True, progress=True,
                                              workers=args.workers)
        hits = text_to_image(model, args.queries, feats, args.top_k)
    rows = [{"query": q, "hits": [{"image": str(images[kept[j]]), "score": s} for j, s in h]}
            for q, h in zip(args.queries, hits)]
    scale = SCALES["rerank" if args.rerank else "itc"]
    lines = [f"# score: {scale}"] if args.rerank else []
    for row in rows:
        lines += [f"{row['query']}:"] + [f"  {h['score']:.4f}  {h['image']}" for h in row["hits"]]
    return report({"scale": scale, "results": rows}, skipped, args.json, lines)


def add_parsers(sub) -> None:
    p = sub.add_parser("embed", help="embed images and/or texts to .safetensors, .npy, or a folder of shards")
    p.add_argument("--images", nargs="+", help="image files or directories")
    p.add_argument("--texts", nargs="+", help="texts to embed with the text tower")
    p.add_argument("--texts-file", help="one text per line")
    p.add_argument("--output", "-o", required=True,
                   help="safetensors: the file to write (images and texts, their names in its metadata; without "
                        "--format, a .npy file holds one array, its names in a .json beside it); npy, parquet: "
                        "the folder to write (resumable: run the same command again to finish a killed run)")
    p.add_argument("--format", choices=["safetensors", "npy", "parquet"],
                   help="safetensors (the default): one file; npy: numbered img_emb/img_emb_NNNN.npy and "
                        "text_emb/text_emb_NNNN.npy shards with metadata.parquet (clip-retrieval's layout); "
                        "parquet: numbered parquet shards, each with an embedding column and the metadata")
    p.add_argument("--shard-size", type=int, default=10_000, metavar="ROWS",
                   help="rows per shard file of --format npy or parquet")
    add_common(p)
    add_workers(p)
    p.set_defaults(run=cmd_embed)
    p = sub.add_parser("classify", help="zero-shot classification")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--labels", nargs="+", help="the class names to choose from")
    p.add_argument("--labels-file", help="one class name per line")
    p.add_argument("--templates", nargs="+", help="prompt templates with {} for the label")
    p.add_argument("--top-k", type=int, default=5, help="labels shown per image (default 5)")
    add_common(p)
    add_workers(p)
    p.set_defaults(run=cmd_classify)
    p = sub.add_parser("search", help="text-to-image search over a folder")
    p.add_argument("queries", nargs="+")
    p.add_argument("--images", nargs="+", required=True, help="image files or directories")
    p.add_argument("--top-k", type=int, default=5, help="hits shown per query (default 5)")
    p.add_argument("--rerank", action="store_true", help="BLIP: rerank the ITC shortlist with the ITM head (score: "
                   "ITM match logit + ITC cosine similarity, as BLIP ranks; not a probability)")
    add_common(p)
    add_workers(p)
    p.set_defaults(run=cmd_search)
