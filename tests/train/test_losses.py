"""The losses against references: transformers' clip_loss, BLIP's ITC/LM written out as in its code."""

import math

import pytest
import torch
import torch.nn.functional as F

from clipblip.train import optim
from clipblip.train.losses import contrastive_loss, hard_negatives, itc_distill_loss, lm_loss, positives


def test_contrastive_matches_transformers():
    from transformers.models.clip.modeling_clip import image_text_contrastive_loss as clip_loss

    img, txt = torch.randn(6, 8), torch.randn(6, 8)
    scale = torch.tensor(math.log(20.0))
    logits_per_text = scale.exp() * F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).t()
    assert torch.allclose(contrastive_loss(img, txt, scale), clip_loss(logits_per_text), atol=1e-6)


def _blip_itc(img, txt, img_m, txt_m, queue_img, queue_txt, temp, alpha):
    """BLIP's blip_pretrain.py forward, ITC part, with its queues stored [D, Q] as there."""
    image_feat_all = torch.cat([img_m.t(), queue_img.t()], dim=1)
    text_feat_all = torch.cat([txt_m.t(), queue_txt.t()], dim=1)
    sim_i2t_m, sim_t2i_m = img_m @ text_feat_all / temp, txt_m @ image_feat_all / temp
    sim_targets = torch.zeros(sim_i2t_m.size())
    sim_targets.fill_diagonal_(1)
    sim_i2t_targets = alpha * F.softmax(sim_i2t_m, dim=1) + (1 - alpha) * sim_targets
    sim_t2i_targets = alpha * F.softmax(sim_t2i_m, dim=1) + (1 - alpha) * sim_targets
    sim_i2t, sim_t2i = img @ text_feat_all / temp, txt @ image_feat_all / temp
    loss_i2t = -torch.sum(F.log_softmax(sim_i2t, dim=1) * sim_i2t_targets, dim=1).mean()
    loss_t2i = -torch.sum(F.log_softmax(sim_t2i, dim=1) * sim_t2i_targets, dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_itc_distill_matches_blip(alpha):
    n, q, d = 5, 7, 8
    img, txt, img_m, txt_m = (F.normalize(torch.randn(n, d), dim=-1) for _ in range(4))
    queue_img, queue_txt = F.normalize(torch.randn(q, d), dim=-1), F.normalize(torch.randn(q, d), dim=-1)
    ids = torch.arange(n)
    ours, (gi, gt, gids) = itc_distill_loss(img, txt, img_m, txt_m, ids, torch.tensor(0.07), alpha, queue_img,
                                            queue_txt, torch.full((q,), -1))
    ref = _blip_itc(img, txt, img_m, txt_m, queue_img, queue_txt, 0.07, alpha)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.equal(gi, img_m) and torch.equal(gids, ids)


def test_positives_spread_over_captions_of_one_image():
    t = positives(torch.tensor([3, 5]), torch.tensor([3, 5, 3, 9]))
    assert torch.allclose(t, torch.tensor([[0.5, 0, 0.5, 0], [0, 1.0, 0, 0]]))


def test_hard_negatives_never_positive_and_follow_the_generator():
    feats = F.normalize(torch.randn(8, 4), dim=-1)
    ids = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])  # items 0 and 1 show the same image
    for seed in range(20):
        neg_img, neg_txt, offset = hard_negatives(feats, feats, ids, torch.tensor(0.1),
                                                  torch.Generator().manual_seed(seed))
        assert offset == 0
        assert not bool((ids[neg_img] == ids).any()) and not bool((ids[neg_txt] == ids).any())
    a = hard_negatives(feats, feats, ids, torch.tensor(0.1), torch.Generator().manual_seed(1))
    b = hard_negatives(feats, feats, ids, torch.tensor(0.1), torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_hard_negatives_prefer_similar_items():
    # item 1 is nearly item 0's twin, the rest are far: the draw should pick it almost always
    feats = F.normalize(torch.tensor([[1.0, 0, 0], [0.99, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0]]), dim=-1)
    picks = [int(hard_negatives(feats, feats, torch.arange(4), torch.tensor(0.05),
                                torch.Generator().manual_seed(s))[0][0]) for s in range(50)]
    assert picks.count(1) >= 45


def test_lm_loss_token_mean_matches_cross_entropy():
    logits, targets = torch.randn(3, 5, 11), torch.randint(1, 11, (3, 5))
    targets[0, 3:] = 0
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0, label_smoothing=0.1)
    assert torch.allclose(lm_loss(logits, targets, pad_id=0, label_smoothing=0.1), ref, atol=1e-6)


def test_lm_loss_per_sequence_weights():
    logits, targets = torch.randn(2, 4, 7), torch.randint(1, 7, (2, 4))
    targets[1, 2:] = 0
    tok = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(2, 4) * (targets != 0)
    w = torch.tensor([0.25, 0.75])
    assert torch.allclose(lm_loss(logits, targets, 0, 0.0, weights=w, per="sequence"), tok.sum(1) * w)


def test_weight_decay_groups_and_schedule():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = optim.adamw(model, lr=1.0, weight_decay=0.1)
    decay, keep = opt.param_groups
    assert [p.shape for p in decay["params"]] == [(4, 4)] and decay["weight_decay"] == 0.1
    assert len(keep["params"]) == 3 and keep["weight_decay"] == 0.0
    lrs = [optim.lr_at(s, 1.0, warmup=4, total=12) for s in range(13)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and lrs[4] == 1.0
    assert lrs[8] == pytest.approx(0.5) and lrs[12] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
