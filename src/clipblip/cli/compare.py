"""`clipblip compare`: CLIP vs BLIP on the same data, written as report.md, report.html and results.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..catalog import DEFAULT
from ..errors import ClipBlipError
from .common import add_common, add_runtime, add_workers, note_embedded, set_threads


def _optional_model(source, default: str, args):
    """A model from a source; None for "none" (compare one family alone), or for the default embedded model
    where this build does not ship it (said on stderr)."""
    from .. import catalog
    from ..loading import load

    if source is None or str(source).lower() == "none":
        return None
    if source == default and catalog.embedded(default) is None:
        print(f"clipblip: the embedded {default} is not shipped in this build; comparing without it",
              file=sys.stderr)
        return None
    note_embedded(source)
    return load(source, device=args.device, precision=args.precision)


def cmd_compare(args) -> int:
    from ..eval import benchmark
    from ..eval.report import summary_table, verdict_lines, write_report

    set_threads(args)
    clip = _optional_model(args.clip, DEFAULT["clip"], args)
    blip = _optional_model(args.blip, DEFAULT["blip"], args)
    blip_vqa = _optional_model(args.blip_vqa, DEFAULT["vqa"], args)
    if clip is None and blip is None:
        raise ClipBlipError("nothing to compare: give --clip and/or --blip")
    command = args.command_line  # set by cli.main: the command line as given
    results, extras = benchmark.run(clip, blip, blip_vqa, data=args.data, n=args.n, seed=args.seed,
                                    split=args.split, image_root=args.image_root, command=command,
                                    sources={"clip": args.clip if clip is not None else None,
                                             "blip": args.blip if blip is not None else None},
                                    progress=not args.json, workers=args.workers)
    out = Path(args.out)
    if args.capfilt is not None:
        results["capfilt"] = _capfilt(blip, Path(args.capfilt) if args.capfilt else out / "capfilt", out,
                                      progress=not args.json)
    if args.binding is not None:
        results["binding"] = _binding(Path(args.binding) if args.binding else out / "binding", args.binding_budget,
                                      progress=not args.json)
    files = write_report(results, out, benchmark.examples(extras, out))
    if args.json:
        print(json.dumps({k: str(v) for k, v in files.items()}, indent=2))
    else:
        print(summary_table(results))
        print("claims (tested; the report has the numbers and the tests):")
        print(verdict_lines(results))
        print(f"report: {files['html']}  (and {files['md']}, {files['json']})")
    return 0


def _capfilt(blip, where: Path, out: Path, progress: bool) -> dict:
    """CapFilt's experiment (experiments/capfilt_gain.py; reused when `where` holds it), its plot copied beside the
    report."""
    import shutil

    from ..experiments.capfilt_gain import run

    if blip is None:
        raise ClipBlipError("--capfilt needs a BLIP model (the captioner and filter): leave --blip at its default "
                            "or give one")
    results = run(where, blip, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results["plot"], out / "capfilt_scores.png")
    return {**results, "plot_file": "capfilt_scores.png"}


def _binding(where: Path, budget: str, progress: bool) -> dict:
    """The binding experiment (experiments/binding.py), resumed from `where` when it holds one; it starts from the
    shipped models, whatever --clip and --blip say."""
    from ..experiments import binding

    return binding.run(where, binding.full() if budget == "full" else binding.BindingConfig(), progress=progress)


def add_parsers(sub) -> None:
    p = sub.add_parser("compare", help="CLIP vs BLIP on the same data: report.md, report.html, results.json")
    for flag, family in (("--clip", "clip"), ("--blip", "blip"), ("--blip-vqa", "vqa")):
        p.add_argument(flag, default=DEFAULT[family],
                       help=f"model source (default: the embedded {DEFAULT[family]}; none leaves it out)")
    p.add_argument("--data", default="shapes", help="shapes (the generated test splits), or a caption or VQA "
                   "dataset: COCO Karpathy JSON, CSV, JSONL, VQA JSON, folder (retrieval, captioning, VQA)")
    p.add_argument("--split", help="the split of a COCO Karpathy file (default: all of it)")
    p.add_argument("--image-root", help="where a dataset's relative image paths start")
    p.add_argument("--n", type=int, default=300, help="scenes per Shapes test split, or records of a dataset "
                   "(default: %(default)s; the README's table is from --n 200 --precision fp32, as `make demo` "
                   "runs it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated Shapes test scenes")
    p.add_argument("--out", default="runs/compare", help="folder for report.md, report.html, results.json and "
                   "the example images")
    p.add_argument("--capfilt", nargs="?", const="", metavar="DIR",
                   help="also measure CapFilt: train CLIP on noisy, CapFilt and clean web corpora (about 20 min on "
                        "a 2-core CPU; resumable; kept in DIR, default OUT/capfilt) and add its section")
    p.add_argument("--binding", nargs="?", const="", metavar="DIR",
                   help="also run the binding experiment: fine-tune five arms from the shipped models (CLIP and BLIP, "
                        "each with and without minimal-edit negatives, and BLIP with ITM negatives from a queue) and "
                        "test which binds attributes; resumable; kept in DIR, default OUT/binding")
    p.add_argument("--binding-budget", choices=("reduced", "full"), default="reduced",
                   help="reduced: 300 steps x 64 per arm, for a 2-core CPU (about 35 min); full: 3,000 x 256 on a "
                        "GPU (scripts/binding_gpu.sh)")
    add_runtime(p)
    add_workers(p)
    add_common(p, model=None)
    p.set_defaults(run=cmd_compare)
