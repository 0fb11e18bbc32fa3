"""BLIP-base caption decoding alone, ours vs transformers, same random weights, fp32, one process: greedy and beam 3
over 8 images' tokens, exactly 20 new tokens (min = max = 20, so both sides do the same work whatever the weights).

    python bench/bench_decode.py [--threads N] [--repeat R] [--legacy]

The image tower runs once, outside the timing (bench_blip.py times it with the rest); both sides start from the
same image tokens, so the time is the decoder's: the cross-attention keys/values of the image (computed once per
call on both sides; transformers repeats them per beam) and the 20 steps. `--legacy` also runs our decoder on a
key/value cache that grows by `torch.cat` each step (what clipblip did before the preallocated cache): against
transformers, and alone against the new cache with the image keys/values computed beforehand (the steps alone,
where the cache is all that differs), old and new alternating in one process on the same machine state.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from common import compare, define_torchvision_ops, machine

STEPS, IMAGES = 20, 8


class CatCache:
    """The old key/value cache: one torch.cat per step and block; beam reorders allocate a new tensor."""

    def __init__(self):
        self.k = self.v = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k, v):
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v

    def select(self, index):
        self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)

    def reserve(self, capacity: int) -> None:  # grows as it goes
        pass


def _legacy(decoder):
    decoder.caches = [CatCache() for _ in decoder.caches]
    return decoder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--legacy", action="store_true", help="also time our decoder on the old torch.cat cache")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    define_torchvision_ops()
    import transformers as T

    import clipblip
    from clipblip.generate import GenerationConfig, generate

    torch.manual_seed(0)
    hf = T.BlipForConditionalGeneration(T.BlipConfig(text_config={"num_attention_heads": 12})).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = clipblip.load(d, device="cpu", precision="fp32")
    t = ours.config.text
    with torch.inference_mode():
        tokens = ours.image_tokens(torch.randn(IMAGES, 3, 384, 384))
    start = torch.full((IMAGES, 1), t.dec_id)
    ones = torch.ones(tokens.shape[:2], dtype=torch.long)

    def theirs(beams):
        return lambda: hf.text_decoder.generate(
            input_ids=start, encoder_hidden_states=tokens, encoder_attention_mask=ones, eos_token_id=t.sep_id,
            pad_token_id=t.pad_id, max_new_tokens=STEPS, min_new_tokens=STEPS, num_beams=beams)

    def mine(beams, wrap=lambda d: d):
        cfg = GenerationConfig(max_new_tokens=STEPS, min_new_tokens=STEPS, num_beams=beams, eos_id=t.sep_id,
                               pad_id=t.pad_id)
        return lambda: generate(wrap(ours.decoder(tokens)), start, cfg)

    print(f"# {machine()}")
    print("| case | transformers s | clipblip s | speed-up |\n|---|---|---|---|")
    with torch.inference_mode():
        for beams, name in ((1, "greedy"), (3, "beam 3")):
            same = [len(x) for x in mine(beams)()] == [STEPS] * IMAGES
            assert same, "every caption must have exactly STEPS tokens"
            rows = [(f"{IMAGES} images, {name}", mine(beams))]
            if args.legacy:
                rows.append((f"{IMAGES} images, {name}, old torch.cat cache", mine(beams, _legacy)))
            for label, fn in rows:
                t_hf, t_ours = compare(theirs(beams), fn, args.repeat, warmup=1)
                print(f"| {label} | {t_hf:.3f} | {t_ours:.3f} | {t_hf / t_ours:.2f}x |", flush=True)
        if args.legacy:
            print("\n| steps alone (image keys/values computed once, beforehand) | old torch.cat cache s | "
                  "preallocated s | speed-up |\n|---|---|---|---|")
            kv = ours.text_decoder.context_kv(tokens)
            ours.text_decoder.context_kv = lambda _: kv  # an instance attribute shadows the method, here only
            for beams, name in ((1, "greedy"), (3, "beam 3")):
                t_old, t_new = compare(mine(beams, _legacy), mine(beams), max(args.repeat, 5), warmup=1)
                print(f"| {IMAGES} images, {name} | {t_old:.3f} | {t_new:.3f} | {t_old / t_new:.2f}x |", flush=True)
            del ours.text_decoder.context_kv


if __name__ == "__main__":
    main()
