"""CLIP training step (forward, contrastive loss, backward, AdamW), ours vs transformers' CLIPModel(return_loss=True),
same config and weights, in one process.

    python bench/bench_train.py                 # CPU fp32, a small config (the goal: >= 1.2x)
    python bench/bench_train.py --gpu           # CUDA bf16 autocast, ViT-B/16 at 224 px, batch 256, with and
                                                # without gradient checkpointing, against the bf16 matmul rate
    python bench/bench_train.py --gpu --compile # the same with torch.compile on both sides (train compile=true
                                                # compiles our towers the same way)

Captions are Shapes captions padded to 77 (what training sees); the 77-token case is printed too. Our text tower
cuts the padding after the batch's last EOT (causal attention makes that exact); HF runs all 77 positions.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from common import compare, define_torchvision_ops, machine


def build(vision: dict, text: dict, dim: int, device):
    from transformers import CLIPConfig, CLIPModel

    import clipblip

    torch.manual_seed(0)
    hf = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=dim)).to(device).train()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = clipblip.load(d, device="cpu", precision="fp32").to(device).train()
    return hf, ours


def captions(n: int) -> list[str]:
    from clipblip.data.shapes import ShapesWorld

    world = ShapesWorld(seed=0)
    return [world.sample("train", i)["caption"] for i in range(n)]


def steps(hf, ours, pixels, ids, autocast):
    from clipblip.train.objectives import Context, clip

    opt_hf = torch.optim.AdamW(hf.parameters(), lr=1e-5)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)

    def theirs():
        with autocast():
            loss = hf(input_ids=ids, pixel_values=pixels, return_loss=True).loss
        loss.backward()
        opt_hf.step()
        opt_hf.zero_grad(set_to_none=True)

    def mine():
        with autocast():
            loss = clip(ours, {"pixels": pixels, "tokens": ids}, Context())["contrastive"]
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    return theirs, mine


def cpu(args):
    import contextlib

    vision = dict(image_size=64, patch_size=8, hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                  num_attention_heads=8)
    text = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=8)
    hf, ours = build(vision, text, 256, "cpu")
    b = args.batch
    pixels = torch.randn(b, 3, 64, 64)
    short = ours.tokenize(captions(b))
    full = torch.randint(1, 49406, (b, 77))
    full[:, 0], full[:, -1] = 49406, 49407
    print(f"CLIP train step, CPU fp32, batch {b}, ViT 64px/8 w256 x6 + text w256 x6 ({machine()})\n")
    print("| case | transformers | clipblip | speed-up |\n|---|---|---|---|")
    for name, ids in (("Shapes captions (padded to 77)", short), ("77-token texts", full)):
        t_hf, t_ours = compare(*steps(hf, ours, pixels, ids, contextlib.nullcontext), repeat=args.repeat)
        print(f"| {name} | {t_hf * 1e3:.0f} ms | {t_ours * 1e3:.0f} ms | {t_hf / t_ours:.2f}x |", flush=True)


def _vit_b16_flops(batch: int) -> float:
    """Matmul FLOPs of one forward pass (2 per multiply-add): ViT-B/16 at 224 (197 tokens, width 768) and the
    text tower (77 tokens, width 512), 12 layers each, 24*N*D^2 + 4*N^2*D per layer, plus patchify."""
    def tower(n, d, layers):
        return layers * (24 * n * d * d + 4 * n * n * d)
    return batch * (tower(197, 768, 12) + 2 * 196 * 768 * 768 + tower(77, 512, 12))


def _matmul_rate() -> float:
    a, b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16), torch.randn(8192, 8192, device="cuda",
                                                                                     dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - t)


def _time_step(fn, n=10) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def gpu(args):
    vision = dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12, hidden_act="gelu")
    text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                hidden_act="gelu")
    hf, ours = build(vision, text, 512, "cuda")
    if args.compile:  # in place, as `clipblip train compile=true` does (train/loop.py)
        hf.compile()
        for tower in (ours.visual, ours.text):
            tower.compile()
    b = args.batch
    pixels = torch.randn(b, 3, 224, 224, device="cuda")
    ids = torch.randint(1, 49406, (b, 77), device="cuda")
    ids[:, 0], ids[:, -1] = 49406, 49407
    rate = _matmul_rate()
    flops = 3 * _vit_b16_flops(b)  # forward + backward (2x forward)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16)

    print(f"ViT-B/16 CLIP train step, bf16 autocast{', torch.compile' if args.compile else ''}, batch {b}, "
          f"77-token texts, {torch.cuda.get_device_name()}")
    print(f"bf16 matmul 8192^3: {rate / 1e12:.0f} TFLOP/s; step work {flops / 1e12:.2f} TFLOP (3x forward)\n")
    print("| model | checkpointing | step | TFLOP/s | share of matmul rate | peak memory |\n|---|---|---|---|---|---|")
    theirs, mine = steps(hf, ours, pixels, ids, autocast)
    for name, fn, model in (("transformers", theirs, hf), ("clipblip", mine, ours)):
        for ckpt in (False, True):
            if name == "transformers":
                (hf.gradient_checkpointing_enable if ckpt else hf.gradient_checkpointing_disable)()
            else:
                for m in ours.modules():
                    if hasattr(m, "grad_checkpointing"):
                        m.grad_checkpointing = ckpt
            torch.cuda.reset_peak_memory_stats()
            t = _time_step(fn)
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"| {name} | {'on' if ckpt else 'off'} | {t * 1e3:.1f} ms | {flops / t / 1e12:.0f} | "
                  f"{flops / t / rate:.0%} | {peak:.1f} GiB |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="GPU: torch.compile both models first")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    define_torchvision_ops()
    if args.gpu:
        args.batch = args.batch or 256
        gpu(args)
    else:
        args.batch = args.batch or 64
        cpu(args)


if __name__ == "__main__":
    main()
