"""BLIP-base, ours vs transformers, same random weights, fp32, one process: captioning (greedy, beam 3), ITM of one
image against 64 texts, VQA generation.

    python bench/bench_blip.py [--threads N] [--repeat R]

Both sides generate exactly 20 new tokens (min = max = 20) so that the work is the same whatever the weights say.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from common import compare, define_torchvision_ops, machine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    define_torchvision_ops()
    import transformers as T

    import clipblip
    from clipblip.generate import GenerationConfig, generate
    from clipblip.tasks.caption import caption_ids

    torch.manual_seed(0)
    cfg = T.BlipConfig(text_config={"num_attention_heads": 12})  # BLIP-base: ViT-B/16 at 384, BERT-base
    hf_cap = T.BlipForConditionalGeneration(cfg).eval()
    hf_itm = T.BlipForImageTextRetrieval(cfg).eval()
    hf_vqa = T.BlipForQuestionAnswering(cfg).eval()
    ours = {}
    for name, hf in (("cap", hf_cap), ("itm", hf_itm), ("vqa", hf_vqa)):
        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d)
            ours[name] = clipblip.load(d, device="cpu", precision="fp32")

    px8, px1 = torch.randn(8, 3, 384, 384), torch.randn(1, 3, 384, 384)
    gen = dict(max_new_tokens=20, min_new_tokens=20)
    texts = ours["itm"].tokenize([f"a photo of {i} red circles next to a blue square" for i in range(64)])
    questions = ours["vqa"].tokenize(["what color is the circle on the left?"] * 8)
    start = torch.tensor([[30522]])

    def ours_vqa():
        m = ours["vqa"]
        states = m.encode_question(questions, m.image_kv(m.image_tokens(px8)))
        return generate(m.decoder(states), start.expand(8, -1), GenerationConfig(**gen))

    def ours_itm():
        m = ours["itm"]
        return m.itm_logits(texts, m.image_kv(m.image_tokens(px1)))

    cases = {
        "caption, batch 8, greedy": (lambda: hf_cap.generate(pixel_values=px8, **gen),
                                     lambda: caption_ids(ours["cap"], px8, start, GenerationConfig(**gen))),
        "caption, batch 8, beam 3": (lambda: hf_cap.generate(pixel_values=px8, num_beams=3, **gen),
                                     lambda: caption_ids(ours["cap"], px8, start,
                                                         GenerationConfig(num_beams=3, **gen))),
        "ITM, 1 image x 64 texts": (lambda: hf_itm(input_ids=texts, pixel_values=px1.expand(64, -1, -1, -1),
                                                   attention_mask=(texts != 0).long()).itm_score,
                                    ours_itm),
        "VQA generate, batch 8": (lambda: hf_vqa.generate(input_ids=questions, pixel_values=px8, **gen), ours_vqa),
        "image tower alone, batch 8": (lambda: hf_cap.vision_model(pixel_values=px8).last_hidden_state,
                                       lambda: ours["cap"].image_tokens(px8)),
    }
    print(f"# {machine()}")
    print("| case | transformers s | clipblip s | speed-up |\n|---|---|---|---|")
    with torch.inference_mode():
        for name, (theirs, mine) in cases.items():
            t_hf, t_ours = compare(theirs, mine, args.repeat, warmup=1)
            print(f"| {name} | {t_hf:.2f} | {t_ours:.2f} | {t_hf / t_ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
