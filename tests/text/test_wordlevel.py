"""Word-level tokenizers for closed vocabularies (the Shapes models)."""

import pickle
import warnings

import pytest
import torch

from clipblip import config as C
from clipblip.errors import ClipBlipError, VocabularyWarning
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


def test_each_punctuation_mark_is_a_word_so_generated_text_reads_back_as_it_was_written():
    """A decoder can emit "." then ",": decode writes "square.," and encoding it again must give both marks, not
    one unknown ".," (as `tokenizers`' Whitespace, which keeps runs of punctuation together, read it)."""
    vocab = full_vocab(WORDS + [","], BERT_SPECIALS)
    tok = BlipWordTokenizer(vocab, max_length=12)
    ids = [vocab.index(w) for w in ("a", "blue", "square", ".", ",", "a", "red", "circle", ".", ".")]
    text = tok.decode(ids)
    assert text == "a blue square., a red circle.."
    with warnings.catch_warnings():
        warnings.simplefilter("error", VocabularyWarning)
        assert tok.encode(text) == ids
    assert tok.unknown_words("a red circle?!") == ["!"]


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


# ---- a closed vocabulary says when a text is outside it ------------------------------------------------------------

def _warned(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, VocabularyWarning)]


def test_unknown_words_warn_naming_the_text_and_the_words_and_open_vocabularies_never_do():
    from clipblip.text import BlipTokenizer, ClipTokenizer

    texts = ["a red circle.", "A green circle", "a PURPLE-ish circle"]
    tok = ClipWordTokenizer(full_vocab(WORDS, CLIP_SPECIALS))
    messages = _warned(lambda: tok(texts))
    assert len(messages) == 2  # the known text is silent
    assert "'A green circle'" in messages[0] and "'green'" in messages[0] and "the model's vocabulary" in messages[0]
    assert "'purple', '-', 'ish'" in messages[1] and "green" not in messages[1]
    assert _warned(lambda: (ClipTokenizer()(texts), BlipTokenizer()(texts))) == []


def test_each_unknown_word_is_reported_once_with_the_first_text_that_holds_it():
    tok = BlipWordTokenizer(full_vocab(WORDS, BERT_SPECIALS))
    first = _warned(lambda: tok(["a green circle", "a green circle"], first="enc"))
    again = _warned(lambda: (tok("a green circle", first="dec"), tok.encode("a green circle.")))
    later = _warned(lambda: tok.encode("a green hexagon"))
    assert len(first) == 1 and again == []  # nothing new: "green" was reported
    assert len(later) == 1 and "'green', 'hexagon'" in later[0]  # a new word: the text and all its unknown words


def test_a_flood_of_unknown_words_stops_after_a_bounded_number_of_warnings():
    """A Shapes model run over a real dataset must not print a line per new word; strictness is not bounded."""
    from clipblip.text.wordlevel import _MAX_WARNINGS

    tok = ClipWordTokenizer(full_vocab(WORDS, CLIP_SPECIALS))
    messages = _warned(lambda: [tok([f"a word{i} circle" for i in range(j, j + 10)]) for j in range(0, 100, 10)])
    assert len(messages) == _MAX_WARNINGS + 1 and "'word0'" in messages[0]
    assert "not reported one by one" in messages[-1] and "the model's vocabulary" in messages[-1]
    tok.strict = True
    with pytest.raises(ClipBlipError, match="'word100'"):
        tok("a word100 circle")


def test_strict_makes_an_unknown_word_a_one_line_error():
    tok = ClipWordTokenizer(full_vocab(WORDS, CLIP_SPECIALS))
    tok.strict = True
    assert tok(["a red circle."]).shape[0] == 1
    with pytest.raises(ClipBlipError, match="'cup', 'coffee'") as info:
        tok(["a red circle", "a cup of\ncoffee"])
    assert "\n" not in str(info.value) and "open vocabulary" in str(info.value)


def test_pickled_tokenizers_keep_their_owner_and_strictness():
    tok = BlipWordTokenizer(full_vocab(WORDS, BERT_SPECIALS))
    tok.owner, tok.strict = "shapes-blip", True
    back = pickle.loads(pickle.dumps(tok))
    assert (back.owner, back.strict, back.vocab) == ("shapes-blip", True, tok.vocab)


def test_load_names_the_model_and_the_warning_points_at_the_callers_line():
    import clipblip

    model = clipblip.load("shapes-clip")
    pixels = torch.zeros(1, 3, model.preprocess.size, model.preprocess.size)
    with pytest.warns(VocabularyWarning, match="shapes-clip's vocabulary") as caught:
        clipblip.classify(model, pixels, ["cat", "red circle"], templates=["a {}"])
    assert [w.filename for w in caught] == [__file__]
    assert "'a cat'" in str(caught[0].message) and "'cat'" in str(caught[0].message)
    strict = clipblip.load("shapes-blip", strict_vocab=True)
    with pytest.raises(ClipBlipError, match="shapes-blip's vocabulary.*'astronaut'"):
        clipblip.match(strict, pixels, ["a red circle", "an astronaut"])
