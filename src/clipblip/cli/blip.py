"""`clipblip caption`, `ask`, `match`: BLIP's captioning, VQA and image-text matching."""

from __future__ import annotations

from .common import add_common, add_workers, listed, load_model, report, require_blip


def cmd_caption(args) -> int:
    from ..generate import GenerationConfig
    from ..jobs import Skipped, find_images
    from ..tasks.caption import captions

    images = find_images(args.images)
    model = load_model(args)
    require_blip(model, "caption")
    t = model.config.text
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                           num_beams=args.beams, top_p=args.top_p, temperature=args.temperature,
                           repetition_penalty=args.repetition_penalty, seed=args.seed, eos_id=t.sep_id, pad_id=t.pad_id,
                           cuda_graphs=args.cuda_graphs)
    skipped = Skipped()
    rows = [{"image": str(images[i]), "caption": text}
            for i, text in captions(model, images, cfg, args.prompt, args.batch_size, skipped, progress=True,
                                    workers=args.workers)]
    return report({"results": rows}, skipped, args.json, [f"{r['image']}: {r['caption']}" for r in rows])


def cmd_ask(args) -> int:
    from ..jobs import Skipped
    from ..tasks.vqa import answer

    model = load_model(args)
    require_blip(model, "ask")
    candidates = listed(args.answers, args.answers_file)
    result = answer(model, [args.image], [args.question], candidates=candidates or None, num_beams=args.beams)[0]
    if candidates:
        ranked = [{"answer": a, "prob": p} for a, p in result[: args.top_k]]
        return report({"question": args.question, "answers": ranked}, Skipped(), args.json,
                      [f"{r['answer']} {r['prob']:.3f}" for r in ranked])
    return report({"question": args.question, "answer": result}, Skipped(), args.json, [result])


def cmd_match(args) -> int:
    from ..jobs import Skipped
    from ..tasks.itm import match

    model = load_model(args)
    require_blip(model, "match")
    probs = match(model, [args.image], args.texts)[0]
    rows = [{"text": t, "match": float(p)} for t, p in zip(args.texts, probs)]
    return report({"image": args.image, "results": rows}, Skipped(), args.json,
                  [f"{r['match']:.4f}  {r['text']}" for r in rows])


def add_parsers(sub) -> None:
    p = sub.add_parser("caption", help="BLIP: caption images")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--beams", type=int, default=1, help="beam search width (default 1: greedy)")
    p.add_argument("--max-new-tokens", type=int, default=30, help="longest caption in tokens (default 30)")
    p.add_argument("--min-new-tokens", type=int, default=0, help="shortest caption in tokens (default 0)")
    p.add_argument("--top-p", type=float, help="sample each token from the smallest set of likeliest tokens whose "
                   "probabilities sum to P (nucleus sampling; default: no sampling)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divide the logits by this before sampling; any value but 1.0 samples, as --top-p does")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="make tokens already in the caption this many times less likely (CTRL's penalty; 1: "
                        "off)")
    p.add_argument("--seed", type=int, help="seed of the sampling, for captions you can reproduce (default: "
                   "random)")
    p.add_argument("--prompt", help="e.g. 'a picture of ' (left out of the output)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="on a GPU, replay each decoding step as a CUDA graph (experimental: not yet run on a GPU)")
    add_common(p, model="blip")
    add_workers(p)
    p.set_defaults(run=cmd_caption)
    p = sub.add_parser("ask", help="BLIP: answer a question about an image")
    p.add_argument("image")
    p.add_argument("question")
    p.add_argument("--answers", nargs="+", help="candidate answers to rank (BLIP's rank mode)")
    p.add_argument("--answers-file", help="one candidate answer per line")
    p.add_argument("--beams", type=int, default=3, help="beam search width of a generated answer (default 3)")
    p.add_argument("--top-k", type=int, default=5, help="ranked answers shown (default 5)")
    add_common(p, model="vqa")
    p.set_defaults(run=cmd_ask)
    p = sub.add_parser("match", help="BLIP: image-text matching probability")
    p.add_argument("image")
    p.add_argument("texts", nargs="+")
    add_common(p, model="blip")
    p.set_defaults(run=cmd_match)
