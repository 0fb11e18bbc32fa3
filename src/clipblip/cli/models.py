"""`clipblip models` (the catalog) and `clipblip convert` (write a checkpoint in another layout)."""

from __future__ import annotations

import json

from ..errors import ClipBlipError
from .common import add_common, report


def cmd_models(args) -> int:
    from .. import catalog, hub

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
        from ..runtime import describe

        print(f"# models load on the device and precision picked by {describe()}")
        for r in rows:
            where = "embedded" if r.get("embedded") else "cached" if r["cached"] else ""
            print(f"{r['name']:<48} {r['family']:<5} {r['hub_id'] or '-':<52} {where}")
    return 0


HF_PARTS = ("encoder", "decoder", "itc", "itm")
ONNX_PARTS = ("image", "text", "vision", "itm")  # export_onnx.PARTS, named here so that --help imports no torch


def _check_parts(to: str, parts) -> None:
    if not parts:
        return
    if to == "native":
        raise ClipBlipError("--parts picks what to export: use it with --to hf (BLIP heads) or --to onnx (graphs)")
    known = HF_PARTS if to == "hf" else ONNX_PARTS
    wrong = [p for p in parts if p not in known]
    if wrong:
        raise ClipBlipError(f"--parts {wrong[0]} is not a part --to {to} exports: pick from {', '.join(known)}")


def cmd_convert(args) -> int:
    from ..export import export_hf
    from ..export_onnx import export_onnx, require_onnx
    from ..jobs import Skipped
    from ..loading import load, save

    _check_parts(args.to, args.parts)
    if args.to == "onnx":
        require_onnx()  # before a catalog model is downloaded for nothing
    model = load(args.source, arch=args.arch, device="cpu", precision="fp32")  # converted as stored
    if args.to == "onnx":
        out = export_onnx(model, args.output, args.parts)
    elif args.to == "hf":
        out = export_hf(model, args.output, args.parts)
    else:
        out = save(model, args.output)
    return report({"output": str(out), "format": args.to}, Skipped(), args.json, [f"wrote {args.to} model to {out}"])


def add_parsers(sub) -> None:
    p = sub.add_parser("models", help="list the catalog of known releases")
    p.add_argument("--family", choices=["clip", "blip"], help="list only this family's models (default: both)")
    add_common(p, model=None)
    p.set_defaults(run=cmd_models)
    p = sub.add_parser("convert", help="write a checkpoint in the native, Hugging Face or ONNX format")
    p.add_argument("source", help="a checkpoint file or directory, or a catalog name")
    p.add_argument("output", help="the directory to write")
    p.add_argument("--to", choices=["native", "hf", "onnx"], default="native",
                   help="native: config.json + model.safetensors for clipblip.load; hf: a directory transformers "
                        "reads; onnx: graphs for onnxruntime with tokenizer.json and onnx_config.json (needs the "
                        "onnx extra)")
    p.add_argument("--parts", nargs="+", choices=list(dict.fromkeys(HF_PARTS + ONNX_PARTS)),
                   help="BLIP to HF: the heads to export (decoder: captioning; encoder itc itm: retrieval; "
                        "encoder decoder: VQA). To ONNX: the graphs (image text: CLIP, or BLIP's ITC; vision itm: "
                        "BLIP's ITM; default: every graph the model has)")
    p.add_argument("--arch", help="architecture of a bare open_clip file")
    add_common(p, model=None)
    p.set_defaults(run=cmd_convert)
