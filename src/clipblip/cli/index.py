"""`clipblip index build|add|delete|search|info`."""

from __future__ import annotations

from ..catalog import DEFAULT
from ..errors import ClipBlipError
from .common import add_common, add_runtime, add_workers, load_model, note_embedded, report, set_threads


def _summary(what: str, r, out) -> list[str]:
    given = f"{r.given} from the embeddings folder, " if r.given else ""
    return [f"{what} {out}: {r.count} items ({given}{r.embedded} embedded, {r.reused} from an interrupted run, "
            f"{r.unchanged} unchanged, {r.removed} removed); {r.kind}, version {r.version}"]


def cmd_build(args) -> int:
    from ..index import build

    set_threads(args, faiss=True)
    r = build(args.source, args.out, args.model, texts=args.texts, format=args.format, image_root=args.image_root,
              kind=args.kind, batch_size=args.batch_size, progress=True, device=args.device,
              precision=args.precision, workers=args.workers)
    if r.embedded or r.reused:
        note_embedded(args.model or DEFAULT["clip"])
    return report({"index": args.out, **r.to_dict()}, r.skipped, args.json, _summary("built", r, args.out))


def cmd_add(args) -> int:
    from ..index import add

    set_threads(args, faiss=True)
    r = add(args.index, args.source, texts=args.texts, format=args.format, image_root=args.image_root,
            batch_size=args.batch_size, progress=True, device=args.device, precision=args.precision,
            workers=args.workers)
    return report({"index": args.index, **r.to_dict()}, r.skipped, args.json, _summary("updated", r, args.index))


def cmd_delete(args) -> int:
    from ..index import delete
    from ..jobs import Skipped

    r, missing = delete(args.index, args.ids)
    skipped = Skipped()
    for i in missing:
        skipped.add(i, "no item with this id")
    return report({"index": args.index, **r.to_dict()}, skipped, args.json,
                   [f"removed {r.removed} items from {args.index}: {r.count} left; version {r.version}"])


def cmd_search(args) -> int:
    from ..index import Index, query
    from ..jobs import Skipped

    if (args.query is None) == (args.image is None):
        raise ClipBlipError("give a text query or --image Q.jpg (one of them)")
    set_threads(args, faiss=True)
    idx = Index.open(args.index)
    model = load_model(args, args.model or idx.model)
    blip = load_model(args, args.rerank) if args.rerank else None
    hits = query(idx, model, text=args.query, image=args.image, k=args.top_k, blip=blip, shortlist=args.shortlist)
    rows = [{"id": h.id, "score": h.score, "path": h.path, "caption": h.caption, "meta": h.meta} for h in hits]
    lines = [f"{h.score:.4f}  #{h.id}  {h.path or ''}  {h.caption or ''}".rstrip() for h in hits]
    return report({"query": args.query or args.image, "hits": rows}, Skipped(), args.json, lines)


def cmd_info(args) -> int:
    import json

    from ..index import Index

    idx = Index.open(args.index)
    info = {"index": args.index, "count": len(idx), "dim": idx.dim, "model": idx.model, "kind": idx.kind,
            "version": idx.version}
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def _source_args(p, model: bool) -> None:
    p.add_argument("--texts", metavar="FILE", help="also index these texts (one per line, text tower)")
    p.add_argument("--format", help="dataset format when the path does not tell (csv, jsonl, coco, folder...)")
    p.add_argument("--image-root", help="where relative image paths of a dataset file start")
    if model:
        p.add_argument("--model", "-m",
                       help=f"CLIP model: path, directory or catalog name (default: the embedded {DEFAULT['clip']}; "
                            "for a folder of embeddings, the model that made them)")
    p.add_argument("--batch-size", type=int, default=32, help="images or texts per model call")
    add_runtime(p)
    add_workers(p)


def add_parsers(sub) -> None:
    from ..index.kinds import KINDS

    idx = sub.add_parser("index", help="semantic search index: faiss vectors + SQLite metadata")
    isub = idx.add_subparsers(dest="index_command", required=True)
    p = isub.add_parser("build", help="embed a folder or dataset into an index (resumable; updates an existing one)")
    p.add_argument("source", nargs="?", help="an image folder, a dataset (CSV, JSONL, COCO/VQA JSON, shards), or a "
                   "folder of embeddings (`clipblip embed --format npy|parquet`: indexed without embedding again)")
    p.add_argument("--out", "-o", required=True, help="the index directory")
    p.add_argument("--kind", default="auto", choices=["auto", *KINDS], help="faiss index (auto: by size)")
    _source_args(p, model=True)
    add_common(p, model=None)
    p.set_defaults(run=cmd_build)
    p = isub.add_parser("add", help="add a folder or dataset to an index (changed files re-embedded)")
    p.add_argument("index")
    p.add_argument("source", nargs="?")
    _source_args(p, model=False)
    add_common(p, model=None)
    p.set_defaults(run=cmd_add)
    p = isub.add_parser("delete", help="remove items by id")
    p.add_argument("index")
    p.add_argument("ids", nargs="+", type=int)
    add_common(p, model=None)
    p.set_defaults(run=cmd_delete)
    p = isub.add_parser("search", help="top-k items for a text or an image (--image), optional BLIP ITM rerank")
    p.add_argument("index")
    p.add_argument("query", nargs="?")
    p.add_argument("--image", help="search by image (image-to-image)")
    p.add_argument("--top-k", type=int, default=10, help="hits shown")
    p.add_argument("--model", "-m", help="CLIP model (default: the one the index was built with)")
    p.add_argument("--rerank", nargs="?", const=DEFAULT["blip"], metavar="BLIP",
                   help=f"rerank the shortlist with a BLIP model's ITM head; a hit's score is then its match "
                        f"probability (default BLIP: {DEFAULT['blip']})")
    p.add_argument("--shortlist", type=int, default=50, help="how many hits the rerank scores")
    add_runtime(p)
    add_common(p, model=None)
    p.set_defaults(run=cmd_search)
    p = isub.add_parser("info", help="size, kind and model of an index")
    p.add_argument("index")
    add_common(p, model=None)
    p.set_defaults(run=cmd_info)

