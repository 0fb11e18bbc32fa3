"""Word-level tokenizers for closed vocabularies (the Shapes models)."""

import pytest
import torch

from clipblip import config as C
from clipblip.errors import ClipBlipError
from clipblip.text.wordlevel import (
    BERT_SPECIALS,
    CLIP_SPECIALS,
    BlipWordTokenizer,
    ClipWordTokenizer,
    bert_ids,
    clip_ids,
    full_vocab,
)

WORDS = ["a", "red", "circle", "left", "of", "blue", "square", ".", "?"]


def test_clip_rows_and_round_trip():
    vocab = full_vocab(WORDS, CLIP_SPECIALS)
    tok = ClipWordTokenizer(vocab, context_length=8)
    ids = tok(["A red circle left of a blue square.", "a green circle"])
    assert ids.shape == (2, 8) and ids[0, 0] == tok.sot_id
    # too long: cut to context_length - 2 words, then eot
    assert ids[0, -1] == tok.eot_id and tok.decode(ids[0]) == "a red circle left of a"
    assert ids[1].tolist()[:5] == [2, vocab.index("a"), 1, vocab.index("circle"), 3]  # unknown "green" -> <unk>
    assert tok.decode(tok(["a red circle."])[0]) == "a red circle."
    assert clip_ids(vocab) == {"vocab_size": len(vocab), "pad_id": 0, "sot_id": 2, "eot_id": 3}


def test_blip_rows_first_token_and_padding():
    vocab = full_vocab(WORDS, BERT_SPECIALS)
    tok = BlipWordTokenizer(vocab, max_length=10)
    ids, mask = tok(["a red circle.", "a blue square left of a red circle."], first="dec")
    assert ids[:, 0].tolist() == [tok.dec_id] * 2 and ids.shape[1] == 10
    assert mask.sum(1).tolist() == [6, 10]
    fixed, _ = tok(["a"], first="enc", pad_to_max=True)
    assert fixed.tolist() == [[5, vocab.index("a"), 3] + [0] * 7]
    assert tok.batch_decode(ids) == ["a red circle.", "a blue square left of a red circle"]  # "." cut
    assert bert_ids(vocab)["enc_id"] == 5
    with pytest.raises(ClipBlipError, match="first must be"):
        tok("a", first="sep")


def test_vocab_must_start_with_the_specials():
    with pytest.raises(ClipBlipError, match="must start with"):
        ClipWordTokenizer(("a", "b"))


def test_model_with_a_word_vocab_saves_and_loads(tmp_path):
    import clipblip
    from clipblip.checkpoint import build

    vocab = full_vocab(WORDS, CLIP_SPECIALS)
    cfg = C.from_dict({"family": "clip", "embed_dim": 8,
                       "vision": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2,
                                  "mlp_dim": 32, "output_dim": 8},
                       "text": {"context_length": 8, "width": 16, "heads": 2, "layers": 1, "mlp_dim": 32,
                                "output_dim": 8, "vocab": list(vocab), **clip_ids(vocab)},
                       "image": {"size": 16}})
    model = build(cfg)
    clipblip.save(model, tmp_path)
    back = clipblip.load(tmp_path)
    assert back.config.text.vocab == vocab
    t = back.tokenize(["a red circle."])
    assert torch.equal(back.encode_text(t), model.eval().encode_text(t))


def test_partial_config_groups_keep_the_family_defaults():
    cfg = C.from_dict({"family": "blip", "vision": {"image_size": 224}})
    assert cfg.vision.image_size == 224 and cfg.vision.patch_size == 16 and cfg.vision.norm_pre is False
