"""CLIPScore and RefCLIPScore (Hessel et al., 2021), and reranking candidate images for a prompt.

CLIP-S(c, v) = w * max(cos(c, v), 0) with w = 2.5, for a text c (a caption, or the prompt of a generated image) and
an image v. RefCLIP-S(c, R, v) = harmonic mean of CLIP-S(c, v) and max(max_{r in R} cos(c, r), 0): the paper's
formula. The reference code (jmhessel/clipscore) leaves the text side unclipped and unweighted; the two agree
whenever some reference has cos >= 0. The reference code also prepends "A photo depicts " to every caption for
ViT-B/32; pass it as `prefix` to reproduce their numbers (the Shapes models do not know the word "depicts").

Rerank (DALL-E's use of CLIP): order N candidate images for one prompt by CLIP cosine similarity, or by BLIP's
ITM match probability.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ClipBlipError
from ..jobs import IMAGE_SUFFIXES, Skipped
from .inputs import image_features, text_features

W = 2.5  # Hessel et al.'s rescaling: puts CLIP-S of ViT-B/32 on COCO roughly in [0, 1]


# ------------------------------------------------------------------------------------------------ the formulas


def clip_s(image_feats: torch.Tensor, text_feats: torch.Tensor, w: float = W) -> torch.Tensor:
    """Per row, w * max(cos(image, text), 0) for paired rows [N, D] (normalized here)."""
    cos = torch.nn.functional.cosine_similarity(image_feats.float(), text_feats.float(), dim=-1)
    return w * cos.clamp(min=0)


def ref_s(text_feats: torch.Tensor, ref_feats: list[torch.Tensor]) -> torch.Tensor:
    """Per row, max(max over that row's references [R_i, D] of cos(text, ref), 0)."""
    t = torch.nn.functional.normalize(text_feats.float(), dim=-1)
    out = [(torch.nn.functional.normalize(r.float(), dim=-1) @ t[i]).max().clamp(min=0)
           for i, r in enumerate(ref_feats)]
    return torch.stack(out) if out else torch.empty(0)


def harmonic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2ab / (a + b), 0 where both are 0."""
    total = a + b
    return torch.where(total > 0, 2 * a * b / total.clamp(min=1e-12), torch.zeros_like(total))


# ----------------------------------------------------------------------------------------------------- Python


def _encode_texts(model, texts: list[str], prefix: str) -> torch.Tensor:
    return text_features(model, [prefix + t for t in texts])


def clipscore(model, images, texts, w: float = W, prefix: str = "", batch_size: int = 32):
    """CLIP-S of each (image, text) pair: a float for one image and one string, else a tensor [N]."""
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    feats, _, _ = image_features(model, images, batch_size)
    if len(feats) != len(texts):
        raise ClipBlipError(f"CLIPScore scores pairs: got {len(feats)} images and {len(texts)} texts")
    scores = clip_s(feats, _encode_texts(model, texts, prefix), w)
    return float(scores[0]) if single else scores


def refclipscore(model, images, texts, references, w: float = W, prefix: str = "", batch_size: int = 32):
    """RefCLIP-S of each (image, text, references) triple; `references` is a list of strings per pair (or one
    list of strings for a single pair). A float for one image and one string, else a tensor [N]."""
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if single and references and isinstance(references[0], str):
        references = [references]
    if len(references) != len(texts) or any(not refs for refs in references):
        raise ClipBlipError("RefCLIPScore needs a non-empty list of references for every text")
    feats, _, _ = image_features(model, images, batch_size)
    if len(feats) != len(texts):
        raise ClipBlipError(f"RefCLIPScore scores pairs: got {len(feats)} images and {len(texts)} texts")
    text_feats = _encode_texts(model, texts, prefix)
    ref_feats = [_encode_texts(model, list(refs), prefix) for refs in references]
    scores = harmonic(clip_s(feats, text_feats, w), ref_s(text_feats, ref_feats))
    return float(scores[0]) if single else scores


# ----------------------------------------------------------------------------------------------- a set of pairs


@dataclass
class Pair:
    image: str
    text: str
    references: list[str] = field(default_factory=list)


def read_pairs(path) -> tuple[list[Pair], Skipped]:
    """Image + prompt (+ references) from a JSONL file ({"image", "prompt" | "caption" | "text", "references"}),
    a CSV/TSV (columns image, prompt | caption | text, optional references joined by "|"), or a folder of images
    with a .txt beside each (first line the prompt, further lines references). Relative image paths start at the
    file's folder. Unusable rows are skipped and listed."""
    path = Path(path)
    if not path.exists():
        raise ClipBlipError(f"{path}: no such file or directory")
    skipped = Skipped()
    if path.is_dir():
        rows = _folder_rows(path, skipped)
    elif path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(path, skipped)
    elif path.suffix.lower() in (".csv", ".tsv"):
        rows = _csv_rows(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        raise ClipBlipError(f"{path}: give a .jsonl, .csv or .tsv file, or a folder of images with .txt prompts")
    pairs = []
    for where, row in rows:
        text = next((row[k] for k in ("prompt", "caption", "text") if isinstance(row.get(k), str) and row[k].strip()),
                    None)
        refs = row.get("references") or []
        refs = [r for r in (refs.split("|") if isinstance(refs, str) else refs) if isinstance(r, str) and r.strip()]
        if not isinstance(row.get("image"), str) or not row["image"] or text is None:
            skipped.add(where, "needs an image path and a prompt (key prompt, caption or text)")
            continue
        pairs.append(Pair(str(path.parent / row["image"]) if not path.is_dir() else row["image"], text.strip(),
                          [r.strip() for r in refs]))
    return pairs, skipped


def _jsonl_rows(path: Path, skipped: Skipped):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                skipped.add(f"{path.name}:{n}", f"invalid JSON ({e.msg})")
                continue
            yield f"{path.name}:{n}", row if isinstance(row, dict) else {}


def _csv_rows(path: Path, delimiter: str):
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.DictReader(f, delimiter=delimiter), 2):
            yield f"{path.name}:{n}", {(k or "").strip().lower(): v for k, v in row.items()}


def _folder_rows(path: Path, skipped: Skipped):
    for image in sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES):
        sidecar = image.with_suffix(".txt")
        if not sidecar.is_file():
            skipped.add(image, f"no prompt: {sidecar.name} is missing")
            continue
        lines = [t.strip() for t in sidecar.read_text(encoding="utf-8", errors="replace").splitlines() if t.strip()]
        yield str(image), {"image": str(image), "prompt": lines[0] if lines else None, "references": lines[1:]}


def score_pairs(model, pairs: list[Pair], w: float = W, prefix: str = "", batch_size: int = 32,
                skipped: Skipped | None = None, progress: bool = False) -> dict:
    """Per-pair CLIP-S (and RefCLIP-S where the pair has references), and the means over the pairs, as in the
    paper. Unreadable images go to `skipped` (a new Skipped when None) and are left out of the means."""
    skipped = skipped if skipped is not None else Skipped()
    feats, kept, bad = image_features(model, [p.image for p in pairs], batch_size, skip_bad=True, progress=progress)
    skipped.items += bad.items
    kept_pairs = [pairs[i] for i in kept]
    text_feats = _encode_texts(model, [p.text for p in kept_pairs], prefix)
    scores = clip_s(feats, text_feats, w)
    items = [{"image": p.image, "text": p.text, "clipscore": float(s)} for p, s in zip(kept_pairs, scores)]
    with_refs = [i for i, p in enumerate(kept_pairs) if p.references]
    if with_refs:
        refs = [_encode_texts(model, kept_pairs[i].references, prefix) for i in with_refs]
        ref = harmonic(scores[with_refs], ref_s(text_feats[with_refs], refs))
        for i, v in zip(with_refs, ref):
            items[i]["refclipscore"] = float(v)
    result = {"n": len(items), "clipscore": float(scores.mean()) if items else None, "items": items}
    if with_refs:
        result["refclipscore"] = float(ref.mean())
        result["n_with_references"] = len(with_refs)
    return result


# ------------------------------------------------------------------------------------------------------ rerank


@torch.no_grad()
def rerank(model, prompt: str, images, by: str = "clip", top_k: int | None = None, batch_size: int = 32,
           skipped: Skipped | None = None) -> list[tuple[int, float]]:
    """[(image index, score)] best first: `by` "clip" scores cosine similarity (any CLIP, or BLIP's ITC), "itm"
    BLIP's match probability. With `skipped`, unreadable images are recorded there and left out; else they raise."""
    if by == "clip":
        feats, kept, bad = image_features(model, images, batch_size, skip_bad=skipped is not None)
        scores = feats @ text_features(model, [prompt])[0]
    elif by == "itm":
        from .caption import require_blip
        from .itm import image_tokens, itm_scores

        require_blip(model, "ITM reranking")
        model.require("itm", "rerank by image-text matching")
        bad = Skipped()
        tokens, _, kept = image_tokens(model, images, batch_size, skipped is not None, bad)
        ids = model.tokenize([prompt], first="enc").to(tokens.device)
        scores = itm_scores(model, tokens, ids).softmax(-1)[:, 0, 1].float().cpu()
    else:
        raise ClipBlipError(f"rerank by 'clip' or 'itm', not {by!r}")
    if skipped is not None:
        skipped.items += bad.items
    order = scores.argsort(descending=True)[:top_k]
    return [(kept[int(o)], float(scores[o])) for o in order]
