"""Objectives on tiny models: VQA and captioning run and learn, gradient checkpointing changes nothing, a model
that cannot run an objective is refused up front, and training reads files written by the data commands."""

import json

import pytest
import torch
from train_helpers import RUN, TINY, run, train_cmd

import clipblip
import clipblip.cli
from clipblip.data.shapes_records import ShapesRecords
from clipblip.errors import ClipBlipError
from clipblip.train import objectives, resolve
from clipblip.train.data import Collate
from clipblip.train.loop import _untied, build_model


def tiny(preset, *more):
    return build_model(resolve(preset, overrides=[*TINY[preset], *more])).train()


def batch(model, kind, n=6):
    records = ShapesRecords("train", n=n, size=32)
    return Collate(model, kind)([(records[i], i, 0) for i in range(n)])


def test_vqa_objective_learns_one_batch():
    model = _untied(tiny("shapes-blip"))
    assert model.text_decoder.blocks[0].xattn is not model.text_encoder.blocks[0].xattn
    b = batch(model, "vqa")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = objectives.vqa(model, b, objectives.Context(label_smoothing=0.0))["vqa"]
        first = first if first is not None else float(loss.detach())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert float(loss.detach()) < 0.2 * first


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    model = tiny("shapes-blip")
    b = batch(model, "blip")
    results = []
    for ckpt in (False, True):
        for m in model.modules():
            if hasattr(m, "grad_checkpointing"):
                m.grad_checkpointing = ckpt
        model.zero_grad()
        loss = objectives.caption(model, b, objectives.Context())["lm"]
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(results[0][0], results[1][0])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(results[0][1], results[1][1]))


def test_objective_and_model_must_fit():
    with pytest.raises(ClipBlipError, match="trains a CLIP model"):
        objectives.check("clip", tiny("shapes-blip"))
    with pytest.raises(ClipBlipError, match="unknown objective"):
        objectives.check("mlm", tiny("shapes-blip"))
    with pytest.raises(ClipBlipError, match="unknown training settings"):
        resolve("shapes-clip", overrides=["learning_rate=1"])
    with pytest.raises(ClipBlipError, match="unknown preset"):
        resolve("shapes-gpt")


def test_train_on_written_jsonl_skips_a_corrupt_image(tmp_path):
    data = tmp_path / "data"
    assert clipblip.cli.main(["data", "shapes", "--out", str(data), "--n", "12", "--size", "32"]) == 0
    jsonl = data / "train.jsonl"
    first = json.loads(jsonl.read_text().splitlines()[0])
    (data / first["image"]).write_bytes(b"not a png")
    out = tmp_path / "run"
    run(train_cmd("shapes-clip", out, "steps=3", "batch_size=4", "save_every=0", f"data={jsonl}"))
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert rejects and rejects[0]["id"] == first["id"]
    model = clipblip.load(out / "model")
    assert model.tokenize(["a red circle."]).shape == (1, 32)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
    """VQA's loss is a mean over questions, so two accumulated halves give the whole batch's gradient."""
    from safetensors.torch import load_file

    from clipblip.train import train

    outs = {}
    for name, more in (("whole", ["batch_size=8", "accum=1"]), ("halves", ["batch_size=4", "accum=2"])):
        cfg = resolve("shapes-blip", overrides=[*TINY["shapes-blip"], *RUN, "objective=vqa", "steps=2",
                                                "save_every=0", f"out={tmp_path / name}", *more])
        outs[name] = load_file(train(cfg) / "model.safetensors")
    start = tiny("shapes-blip").state_dict()
    moved = [k for k in outs["whole"] if not torch.equal(outs["whole"][k], start[k])]
    assert moved, "the runs did not train"
    for k in outs["whole"]:
        assert torch.allclose(outs["whole"][k], outs["halves"][k], atol=1e-5), k


def test_init_vision_copies_the_image_tower(tmp_path):
    clip = tiny("shapes-clip")
    clipblip.save(clip, tmp_path / "clip")
    blip = tiny("shapes-blip", f"init_vision={tmp_path / 'clip'}")
    assert torch.equal(blip.visual.blocks[0].attn.qkv.weight, clip.visual.blocks[0].attn.qkv.weight)
    assert blip.visual.proj is None  # BLIP's tower has no projection of CLIP's
    with pytest.raises(ClipBlipError, match="does not fit"):
        tiny("shapes-blip", "model.vision.patch_bias=true", f"init_vision={tmp_path / 'clip'}")


def test_one_epoch_sees_every_question_type_and_caption_position():
    """Each record starts its cycle through captions and questions at its own place: a Shapes record's first
    question is always about colour, so cycling by epoch alone would train VQA on colour questions only."""
    from clipblip.train.data import _choose

    records = ShapesRecords("train", n=14, size=32)
    types = {_choose(records[i]["vqa"], i, 0)["type"] for i in range(14)}
    assert len(types) >= 4
    assert {_choose(records[i]["captions"], i, 0) for i in range(5)} != {records[i]["captions"][0] for i in range(5)}
    assert [_choose([0, 1, 2], 4, e) for e in range(3)] == [1, 2, 0]
