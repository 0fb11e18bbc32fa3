"""`clipblip capfilt`: caption and filter a noisy image-text dataset into a clean one (see data/capfilt.py)."""

from __future__ import annotations

import json
from pathlib import Path

from ..catalog import DEFAULT
from .common import add_runtime, add_workers, note_embedded, set_threads


def cmd_capfilt(args) -> int:
    from .. import distributed
    from ..data.capfilt import capfilt, labelled_scores, merge_parts
    from ..extras import require
    from ..loading import load
    from ..metrics import calibrate
    from ..runtime import resolve_device
    from ..tasks.capfilt import CapFiltConfig

    set_threads(args)
    if args.shards:  # written after the whole job: say now if they cannot be
        require("webdataset", "train", "clipblip capfilt --shards")
    require("matplotlib", "eval", "CapFilt's score plot")  # the job checks it too; here it comes before any note
    device = resolve_device(args.device)
    env = distributed.setup(device.type)
    device = str(device if env.world == 1 else env.device)  # under torchrun each rank its own GPU
    try:
        note_embedded(args.captioner, args.filter)
        captioner = load(args.captioner, device=device, precision=args.precision)
        filt = captioner if args.filter == args.captioner else load(args.filter, device=device,
                                                                     precision=args.precision)
        threshold = args.threshold
        if args.calibrate:
            threshold = calibrate(labelled_scores(filt, args.calibrate, CapFiltConfig(batch_size=args.batch_size),
                                                  limit=args.calibrate_n))
            if env.main and not args.json:
                print(f"calibrated threshold: {threshold:.4f} (max TPR - FPR on {args.calibrate})")
        cfg = CapFiltConfig(n_synthetic=args.synthetic, top_p=args.top_p, prompt=args.prompt, threshold=threshold,
                            part_size=args.part_size, batch_size=args.batch_size, seed=args.seed,
                            workers=args.workers)
        done = capfilt(args.data, args.out, captioner, filt, cfg, rank=env.rank, world=env.world,
                       progress=env.main and not args.json, merge=env.world == 1)
        if env.world > 1:
            distributed.barrier()
            if not env.main:
                return 0
            done = merge_parts(Path(args.out), done["parts"], cfg)
        if args.shards:
            from ..data.readers import open_dataset
            from ..data.rejects import Rejects
            from ..data.shards import write_shards

            with Rejects(Path(args.out) / "shards" / "rejects.jsonl") as rejects:
                write_shards(open_dataset(Path(args.out) / "captions.jsonl"), Path(args.out) / "shards",
                             shard_size=args.shards, prefix="capfilt", rejects=rejects, progress=not args.json)
    finally:
        distributed.cleanup()
    _print(done, Path(args.out), args.json)
    # exit 3 (done, items skipped) alone; under torchrun any non-zero exit reads as a failed job
    return 3 if done["rejected"] and env.world == 1 else 0


def _print(summary: dict, out: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in summary.items() if k != "score_histogram"}, indent=2))
        return
    k, d = summary["kept"], summary["dropped"]
    print(f"{summary['images']} images: kept {k['original']} of {k['original'] + d['original']} original and "
          f"{k['synthetic']} of {k['synthetic'] + d['synthetic']} synthetic captions (threshold "
          f"{summary['threshold']:.3g}); {summary['images_without_captions']} images left without a caption")
    q = summary.get("filter_quality")
    if q:
        for kind in [key for key, v in q.items() if isinstance(v, dict)]:
            v = q[kind]
            prec = "-" if v["precision"] is None else f"{v['precision']:.1%}"
            print(f"  removing {kind:<8} captions: precision {prec}, recall {v['recall']:.1%}, "
                  f"ROC AUC {v['roc_auc']:.3f} (n={v['n']})")
    if summary["rejected"]:
        print(f"{summary['rejected']} image(s) skipped: see {out / 'rejects.jsonl'}")
    print(f"wrote {out / 'captions.jsonl'}, {out / 'summary.json'}, {out / 'scores.png'}")


def add_parsers(sub) -> None:
    p = sub.add_parser("capfilt", help="BLIP's CapFilt: caption and filter a noisy image-text dataset")
    p.add_argument("--data", required=True, help="the noisy dataset: JSONL, CSV, folder, COCO JSON or shards")
    p.add_argument("--out", required=True, help="output folder: captions.jsonl, summary.json, scores.png")
    p.add_argument("--captioner", default=DEFAULT["blip"], help=f"BLIP captioning model (default {DEFAULT['blip']})")
    p.add_argument("--filter", default=DEFAULT["blip"], help=f"BLIP ITM model (default {DEFAULT['blip']})")
    p.add_argument("--synthetic", type=int, default=1, help="synthetic captions per image (default 1, as BLIP)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling top-p (default 0.9, as BLIP)")
    p.add_argument("--prompt", help="caption prompt the captioner was trained with, e.g. 'a picture of'")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="keep a caption when its ITM match probability is at least this (default 0.5: ITM says match)")
    p.add_argument("--calibrate", metavar="LABELLED",
                   help="choose the threshold on a dataset whose captions carry noise labels (max TPR - FPR)")
    p.add_argument("--calibrate-n", type=int, default=512, help="records of the calibration set to use")
    p.add_argument("--shards", type=int, metavar="SIZE", help="also write webdataset shards of SIZE to OUT/shards")
    p.add_argument("--part-size", type=int, default=256, help="images per resumable part")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic captions' sampling")
    add_runtime(p)
    add_workers(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=cmd_capfilt)
