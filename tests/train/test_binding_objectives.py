"""The binding experiment's objectives: NegCLIP's edit negatives in CLIP's and BLIP's ITC, the edits among ITM's
no-match pairs, ITM negatives mined from the queue, and the batches that carry the edits."""

import math

import pytest
import torch
import torch.nn.functional as F
from train_helpers import RUN, TINY

from clipblip.data.shapes_records import ShapesRecords
from clipblip.errors import ClipBlipError
from clipblip.train import objectives, resolve
from clipblip.train.data import Collate, edit
from clipblip.train.loop import Trainer, build_model
from clipblip.train.losses import contrastive_loss, itc_distill_loss, pool_negatives
from clipblip.train.momentum import Momentum


def tiny(preset, *more):
    return build_model(resolve(preset, overrides=[*TINY[preset], *more])).train()


def edit_batch(model, kind, n=6, start=0):
    records = ShapesRecords("train", n=start + n, size=32)
    return Collate(model, kind, edits=True)([(records[i], i, 0) for i in range(start, start + n)])


def test_contrastive_with_edits_scores_every_image_against_2b_texts():
    img, txt, edits = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    scale = torch.tensor(math.log(10.0))
    i, t, e = (F.normalize(x, dim=-1) for x in (img, txt, edits))
    logits_i2t = 10 * i @ torch.cat([t, e]).t()  # [B, 2B], the label in the first B columns
    assert logits_i2t.shape == (4, 8)
    labels = torch.arange(4)
    ref = (F.cross_entropy(logits_i2t, labels) + F.cross_entropy(10 * t @ i.t(), labels)) / 2
    assert torch.allclose(contrastive_loss(img, txt, scale, edits), ref, atol=1e-6)
    # the edit really enters: another edit, another loss; rows without an edit drop their column
    assert not torch.allclose(contrastive_loss(img, txt, scale, torch.randn(4, 8)), ref)
    none = torch.zeros(4, dtype=torch.bool)
    assert torch.allclose(contrastive_loss(img, txt, scale, edits, none), contrastive_loss(img, txt, scale))
    some = torch.tensor([True, False, True, False])
    logits = 10 * i @ torch.cat([t, e[some]]).t()
    ref = (F.cross_entropy(logits, labels) + F.cross_entropy(10 * t @ i.t(), labels)) / 2
    assert torch.allclose(contrastive_loss(img, txt, scale, edits, some), ref, atol=1e-6)


def test_itc_edits_are_image_to_text_negatives_without_distillation_mass():
    n, q, d = 4, 5, 8
    img, txt, img_m, txt_m, edits = (F.normalize(torch.randn(n, d), dim=-1) for _ in range(5))
    queue = (F.normalize(torch.randn(q, d), dim=-1), F.normalize(torch.randn(q, d), dim=-1), torch.full((q,), -1))
    ids, temp = torch.arange(n), torch.tensor(0.1)
    plain, _ = itc_distill_loss(img, txt, img_m, txt_m, ids, temp, 0.4, *queue)
    with_edits, _ = itc_distill_loss(img, txt, img_m, txt_m, ids, temp, 0.4, *queue, extra_txt_m=edits,
                                     extra_mask=torch.ones(n, dtype=torch.bool))
    other, _ = itc_distill_loss(img, txt, img_m, txt_m, ids, temp, 0.4, *queue, extra_txt_m=-edits,
                                extra_mask=torch.ones(n, dtype=torch.bool))
    masked, _ = itc_distill_loss(img, txt, img_m, txt_m, ids, temp, 0.4, *queue, extra_txt_m=edits,
                                 extra_mask=torch.zeros(n, dtype=torch.bool))
    assert with_edits > plain and not torch.allclose(with_edits, other) and torch.allclose(masked, plain)
    # written out: the i2t targets are the plain ones with zeros on the edit columns
    bank_txt, bank_img = torch.cat([txt_m, queue[1]]), torch.cat([img_m, queue[0]])
    truth = torch.cat([torch.eye(n), torch.zeros(n, q)], dim=1)
    t_i2t = 0.4 * F.softmax(img_m @ bank_txt.t() / temp, 1) + 0.6 * truth
    t_t2i = 0.4 * F.softmax(txt_m @ bank_img.t() / temp, 1) + 0.6 * truth
    i2t = -(F.log_softmax(img @ torch.cat([bank_txt, edits]).t() / temp, 1)[:, :n + q] * t_i2t).sum(1).mean()
    t2i = -(F.log_softmax(txt @ bank_img.t() / temp, 1) * t_t2i).sum(1).mean()
    assert torch.allclose(with_edits, (i2t + t2i) / 2, atol=1e-5)


def test_pool_negatives_never_pick_the_same_item_or_an_empty_slot():
    pool = F.normalize(torch.randn(10, 4), dim=-1)
    pool_ids = torch.tensor([0, 1, 2, 0, 1, -1, 2, 5, -1, 7])
    img = pool[[0, 1, 2]] + 0.01  # each image closest to its own texts
    ids = torch.tensor([0, 1, 2])
    for seed in range(50):
        picked = pool_negatives(img, ids, pool, pool_ids, torch.tensor(0.05), torch.Generator().manual_seed(seed))
        assert picked.shape == (3,)
        assert not bool((pool_ids[picked] == ids).any()) and not bool((pool_ids[picked] < 0).any())
    with pytest.raises(ValueError, match="only its own texts"):
        pool_negatives(img[:1], ids[:1], pool[:1], pool_ids[:1], torch.tensor(0.05), torch.Generator())


def test_collate_edits_are_negatives_of_the_caption_shown():
    model = tiny("shapes-clip")
    records = ShapesRecords("train", n=4, size=32)
    for epoch in (0, 1):
        for i in range(4):
            r = records[i]
            k = (i + epoch) % len(r["captions"])
            assert edit(r, i, epoch) in [n["text"] for n in r["negatives"][k]]
            assert edit(r, i, epoch) == edit(r, i, epoch)
    assert edit({"caption": "a red circle.", "negatives": []}, 0, 0) is None
    b = Collate(model, "clip", edits=True)([(records[0], 0, 0), ({**records[1], "negatives": [[]] * 5}, 1, 0)])
    assert b["edit_tokens"].shape == b["tokens"].shape and b["has_edit"].tolist() == [True, False]
    assert torch.equal(b["edit_tokens"][1], b["tokens"][1])  # no edit: a copy, masked out
    bare = [({**records[i], "negatives": []}, i, 0) for i in range(2)]
    with pytest.raises(ClipBlipError, match="minimal-edit negatives"):
        Collate(model, "clip", edits=True)(bare)


def test_negclip_objective_uses_the_edits():
    model = tiny("shapes-clip")
    b = edit_batch(model, "clip")
    loss = objectives.clip_negclip(model, b, objectives.Context())["contrastive"]
    swapped = {**b, "edit_tokens": edit_batch(model, "clip", start=6)["edit_tokens"]}  # other captions' edits
    assert not torch.allclose(loss, objectives.clip_negclip(model, swapped, objectives.Context())["contrastive"])
    loss.backward()
    assert all(p.grad is not None for p in model.text.parameters())


def _itm_inputs(model, monkeypatch):
    seen = {}
    itm_logits = model.itm_logits

    def spy(ids, kv):
        seen["ids"] = ids
        return itm_logits(ids, kv)
    monkeypatch.setattr(model, "itm_logits", spy)
    return seen


def test_retrieval_edits_adds_each_edit_as_a_no_match_pair(monkeypatch):
    model = tiny("shapes-blip")
    with torch.no_grad():
        model.itm_head.weight.mul_(100)  # a random ITM head barely tells texts apart
    b = edit_batch(model, "blip")
    b["has_edit"][2] = False
    seen = _itm_inputs(model, monkeypatch)
    ctx = objectives.Context(momentum=Momentum(model, queue_size=48))
    losses = objectives.retrieval_edits(model, b, ctx)
    n = b["ids"].shape[0]
    assert seen["ids"].shape[0] == 3 * n + n - 1  # positives, two hard negatives each, the edits (one row has none)
    edits = b["edit_ids"][b["has_edit"]]
    assert torch.equal(seen["ids"][3 * n:, 1:], edits[:, 1:])
    assert seen["ids"][3 * n, 0] == model.config.text.enc_id
    ctx = objectives.Context(momentum=Momentum(model, queue_size=48))
    other = objectives.retrieval_edits(model, {**b, "edit_ids": edit_batch(model, "blip", start=6)["edit_ids"]}, ctx)
    assert not torch.allclose(losses["itm"], other["itm"])
    plain = objectives.retrieval(model, b, objectives.Context(momentum=Momentum(model, queue_size=48)))
    assert losses["itc"] > plain["itc"]  # five more negative texts in each image's softmax


def test_retrieval_queue_mines_itm_negatives_from_the_queued_texts(monkeypatch):
    model = tiny("shapes-blip")
    momentum = Momentum(model, queue_size=48, text_ids=True)
    records = ShapesRecords("train", n=30, size=32)
    collate = Collate(model, "blip")
    first = collate([(records[i], i, 0) for i in range(24)])
    objectives.retrieval_queue(model, first, objectives.Context(momentum=momentum))
    assert torch.equal(momentum.queue_text[:24], first["ids"]) and torch.equal(momentum.queue_ids[:24],
                                                                                 torch.arange(24))
    seen = _itm_inputs(model, monkeypatch)
    b = collate([(records[i], i, 0) for i in range(24, 30)])
    objectives.retrieval_queue(model, b, objectives.Context(step=1, momentum=momentum))
    negatives = seen["ids"][12:]  # after the positives and the texts' hard negative images
    queue = [tuple(row[1:].tolist()) for row in momentum.queue_text[:30]]
    for k, row in enumerate(negatives):
        text = tuple(row[1:].tolist())
        holders = {i for i, t in enumerate(queue) if t == text}
        assert holders and holders != {24 + k}  # a queued text, not (only) the image's own


@pytest.mark.parametrize("objective", ["clip-negclip", "retrieval-edits", "retrieval-queue"])
def test_new_objectives_train_and_resume(objective, tmp_path):
    preset = "shapes-clip" if objective.startswith("clip") else "shapes-blip"
    over = [*TINY[preset], *RUN, f"objective={objective}", "batch_size=6", "save_every=2", "eval_n=4",
            f"out={tmp_path}"]
    Trainer(resolve(preset, overrides=[*over, "steps=2"])).run()
    saved = torch.load(tmp_path / "checkpoints" / "step-00000002.pt", weights_only=False)
    if objective == "retrieval-queue":
        assert (saved["momentum"]["queue_ids"] >= 0).sum() == 12 and "queue_text" in saved["momentum"]
    trainer = Trainer(resolve(preset, overrides=[*over, "steps=3"]), resume=True)
    assert trainer.step == 2
    trainer.run()
    assert (tmp_path / "model").exists()
