"""The compare report's metrics: recall on hand-made matrices, BLEU against sacrebleu, CIDEr-D against
pycocoevalcap's own scorer on random caption sets, VQA normalization and soft accuracy, pairwise ties."""

import random

import pytest
import torch

from clipblip.errors import ClipBlipError
from clipblip.metrics import (
    accuracy,
    bleu4,
    caption_tokens,
    cider_d,
    cider_d_scores,
    normalize_answer,
    pairwise_accuracy,
    retrieval_recall,
    vqa_accuracy,
)

# ---------------------------------------------------------------------------------------------------- retrieval


def test_recall_one_caption_per_image():
    # text 0 -> image 0 ranked 1st; text 1 -> image 1 ranked 2nd; text 2 -> image 2 ranked 3rd
    sim = torch.tensor([[0.9, 0.1, 0.0],
                        [0.8, 0.7, 0.1],
                        [0.9, 0.8, 0.1]])
    r = retrieval_recall(sim, [0, 1, 2], ks=(1, 2, 3))
    assert r["t2i"] == {"r1": pytest.approx(1 / 3), "r2": pytest.approx(2 / 3), "r3": 1.0}
    # every image's own text is 2nd in its column: image 0's text 0 (0.9) ties text 2 (ties count against),
    # image 1's text 1 (0.7) is beaten by text 2 (0.8), image 2's text 2 (0.1) ties text 1
    assert r["i2t"] == {"r1": 0.0, "r2": 1.0, "r3": 1.0}


def test_recall_several_captions_per_image_any_counts_for_i2t():
    # 4 texts, 2 images; texts 0,1 -> image 0; texts 2,3 -> image 1
    sim = torch.tensor([[0.1, 0.9],    # text 0 prefers the wrong image
                        [0.8, 0.2],    # text 1 right
                        [0.3, 0.4],    # text 2 right
                        [0.7, 0.1]])   # text 3 wrong
    r = retrieval_recall(sim, torch.tensor([0, 0, 1, 1]), ks=(1, 2))
    assert r["t2i"] == {"r1": 0.5, "r2": 1.0}
    # image 0: best own text is text 1 (0.8), top of its column -> hit at 1
    # image 1: best own text is text 2 (0.4), beaten only by text 0 (0.9) -> rank 2
    assert r["i2t"] == {"r1": 0.5, "r2": 1.0}


def test_recall_k_clipped_to_gallery_and_default_keys():
    sim = torch.randn(6, 3)
    r = retrieval_recall(sim, [0, 1, 2, 0, 1, 2])
    assert set(r["t2i"]) == {"r1", "r5", "r10"}
    # K=5 and K=10 exceed 3 images / 6 texts: every text and image is found
    assert r["t2i"]["r5"] == r["t2i"]["r10"] == 1.0
    assert r["i2t"]["r10"] == 1.0


def test_recall_constant_matrix_is_not_perfect():
    r = retrieval_recall(torch.zeros(4, 4), [0, 1, 2, 3], ks=(1, 4))
    assert r["t2i"]["r1"] == 0.0 and r["i2t"]["r1"] == 0.0
    assert r["t2i"]["r4"] == 1.0


def test_recall_matches_argsort_ranks_on_random_scores():
    torch.manual_seed(0)
    sim = torch.randn(50, 10)
    gt = torch.arange(50) % 10
    r = retrieval_recall(sim, gt, ks=(1, 3))
    order = sim.argsort(dim=1, descending=True)
    t2i_rank = (order == gt[:, None]).float().argmax(1)
    assert r["t2i"]["r3"] == pytest.approx(float((t2i_rank < 3).float().mean()))
    col_order = sim.t().argsort(dim=1, descending=True)                      # [I, T]
    i2t_rank = torch.stack([(gt[col_order[i]] == i).float().argmax() for i in range(10)])
    assert r["i2t"]["r1"] == pytest.approx(float((i2t_rank < 1).float().mean()))


def test_recall_image_without_text_counts_for_t2i_only():
    sim = torch.tensor([[0.9, 0.1, 0.95],
                        [0.1, 0.9, 0.0]])
    r = retrieval_recall(sim, [0, 1], ks=(1,))
    assert r["t2i"]["r1"] == 0.5                      # text 0 is beaten by the distractor image 2
    assert r["i2t"]["r1"] == 1.0                      # image 2 has no text: not a query


@pytest.mark.parametrize("sim, gt", [(torch.zeros(3), [0, 1, 2]), (torch.zeros(3, 2), [0, 1]),
                                     (torch.zeros(2, 2), [0, 2])])
def test_recall_bad_input_is_a_user_error(sim, gt):
    with pytest.raises(ClipBlipError):
        retrieval_recall(sim, gt)


# ---------------------------------------------------------------------------------------------------- BLEU

def test_bleu_matches_sacrebleu_and_pads_missing_references():
    import sacrebleu

    hyps = ["A dog runs on the grass.", "two cats sleep on a red sofa", "a man rides a bike down the street"]
    refs = [["A dog is running on the grass.", "a brown dog runs across a lawn"],
            ["Two cats are sleeping on a red couch."],
            ["a man riding a bicycle down a street", "a person on a bike", "a cyclist in the city street"]]
    # sacrebleu's own call, references padded by hand with the last one (does not change BLEU: same max counts
    # and the same closest length)
    streams = [[r[min(j, len(r) - 1)] for r in refs] for j in range(3)]
    expected = sacrebleu.corpus_bleu(hyps, streams, lowercase=True, tokenize="13a").score / 100
    assert 0.05 < expected < 0.9
    assert bleu4(hyps, refs) == pytest.approx(expected, abs=1e-12)


def test_bleu_identity_and_case():
    refs = [["a dog runs on the grass", "another caption"], ["two cats sleep on a red sofa today"]]
    assert bleu4(["A Dog runs on the grass", "two cats sleep on a red sofa today"], refs) == pytest.approx(1.0)
    assert bleu4(["completely unrelated words here", "nothing matches at all ever"], refs) < 0.05


def test_bleu_needs_references():
    with pytest.raises(ClipBlipError):
        bleu4(["a dog"], [[]])
    with pytest.raises(ClipBlipError):
        bleu4(["a dog", "a cat"], [["a dog"]])


# ---------------------------------------------------------------------------------------------------- CIDEr-D

WORDS = "a the dog cat man red blue runs sits on grass street".split()


def _caption(rng, lo=1, hi=12):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _random_set(rng):
    """hypotheses and references of a few images; some hypotheses copy a reference, some are empty or 1 word."""
    refs = [[_caption(rng) for _ in range(rng.randint(1, 5))] for _ in range(rng.randint(1, 8))]
    hyps = []
    for r in refs:
        kind = rng.random()
        hyps.append(rng.choice(r) if kind < 0.25 else "" if kind < 0.35 else _caption(rng, 0 if kind < 0.5 else 1))
    return hyps, refs


def test_cider_d_equals_pycocoevalcap_on_random_sets():
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    rng = random.Random(0)
    for _ in range(40):
        hyps, refs = _random_set(rng)
        gts = {i: r for i, r in enumerate(refs)}
        res = {i: [h] for i, h in enumerate(hyps)}
        want, want_each = cider.Cider().compute_score(gts, res)
        assert cider_d(hyps, refs) == pytest.approx(float(want), abs=1e-6)
        assert cider_d_scores(hyps, refs) == pytest.approx(list(want_each), abs=1e-6)


def test_cider_d_tokenizes_like_the_coco_tokenizer_would():
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    hyps = ["A dog's ball, on the GRASS.", "Two cats -- sleeping!"]
    refs = [["a dog's red ball on the grass .", "The ball of a dog."], ["two cats sleeping on a sofa"]]
    assert caption_tokens(hyps[0]) == ["a", "dog", "'s", "ball", "on", "the", "grass"]
    # what coco-caption's PTBTokenizer would hand the scorer: lowercase, clitics split, punctuation gone
    gts = {0: ["a dog 's red ball on the grass", "the ball of a dog"], 1: ["two cats sleeping on a sofa"]}
    res = {0: ["a dog 's ball on the grass"], 1: ["two cats sleeping"]}
    assert cider_d(hyps, refs) == pytest.approx(float(cider.Cider().compute_score(gts, res)[0]), abs=1e-6)


def test_cider_d_rewards_consensus():
    refs = [["a dog runs on the grass", "a dog runs on green grass"], ["a red car on the street"],
            ["a man sits on a bench"]]
    good = cider_d(["a dog runs on the grass", "a red car on the street", "a man sits on a bench"], refs)
    bad = cider_d(["a bench", "a dog", "the grass"], refs)
    assert good > 1.0 > bad >= 0.0


# ---------------------------------------------------------------------------------------------------- VQA

def test_normalize_answer():
    assert normalize_answer("  Two  Dogs. ") == "two dogs"
    assert normalize_answer("Yes!") == "yes"
    assert normalize_answer("3.5") == "3.5"


def test_vqa_accuracy_exact_and_per_type():
    preds = ["Yes.", "2", "red", "a cat"]
    answers = [["yes"], ["two", "2"], ["blue"], ["A  cat"]]
    r = vqa_accuracy(preds, answers, types=["yes/no", "number", "other", "other"])
    assert r == {"overall": 0.75, "per_type": {"number": 1.0, "other": 0.5, "yes/no": 1.0}, "n": 4}
    assert vqa_accuracy(preds, answers)["per_type"] == {}


def test_vqa_soft_accuracy_is_the_official_formula():
    # 10 human answers, 3 say "red": the leave-one-out average of min(#/3, 1) is (3 * 2/3 + 7 * 1) / 10 = 0.9
    humans = ["red"] * 3 + ["dark red"] * 7
    assert vqa_accuracy(["red"], [humans], soft=True)["overall"] == pytest.approx(0.9)
    assert vqa_accuracy(["dark red"], [humans], soft=True)["overall"] == pytest.approx(1.0)
    assert vqa_accuracy(["blue"], [humans], soft=True)["overall"] == 0.0
    # hard accuracy: any accepted answer counts fully; under 3 answers soft falls back to it
    assert vqa_accuracy(["red"], [humans])["overall"] == 1.0
    assert vqa_accuracy(["red"], [["red", "blue"]], soft=True)["overall"] == 1.0


def test_vqa_bad_input():
    with pytest.raises(ClipBlipError):
        vqa_accuracy(["yes"], [[]])
    with pytest.raises(ClipBlipError):
        vqa_accuracy(["yes"], [["yes"]], types=["a", "b"])


# ---------------------------------------------------------------------------------------------------- probes

def test_pairwise_accuracy_ties_are_wrong():
    r = pairwise_accuracy([0.9, 0.5, 0.3, 0.7], torch.tensor([0.1, 0.5, 0.4, 0.2]),
                          ["swap", "swap", "attribute", "attribute"])
    assert r == {"all": 0.5, "per_type": {"attribute": 0.5, "swap": 0.5}, "n": 4}
    assert pairwise_accuracy(torch.ones(5), torch.ones(5))["all"] == 0.0


def test_accuracy():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert accuracy(torch.tensor([1, 0]), torch.tensor([1, 1])) == 0.5
    assert accuracy(["cat", "dog"], ["cat", "dog"]) == 1.0
    with pytest.raises(ClipBlipError):
        accuracy([1, 2], [1])
