"""BlipTokenizer against transformers' BertTokenizer built the way BLIP builds its tokenizer.

BLIP: BertTokenizer.from_pretrained('bert-base-uncased'), add_special_tokens({'bos_token': '[DEC]'}),
add_special_tokens({'additional_special_tokens': ['[ENC]']}). In transformers 5 `BertTokenizer(vocab_file=...)`
ignores the file (the constructor takes `vocab=`, and the kwarg is swallowed: a 5-token vocab results), so the
reference is loaded with from_pretrained from a directory holding the shipped vocab.txt and a tokenizer_config.json
like bert-base-uncased's, and its size is checked before anything is compared.

transformers 5 decodes with clean_up_tokenization_spaces=False unless told; BLIP (transformers 4.15) decoded with
it on, so the reference decode is called with clean_up_tokenization_spaces=True.

A second, independent reference is transformers' pure-Python BertTokenizerLegacy (the class BLIP ran): it agrees id
for id except on a word-final capital sigma, which test_final_sigma_follows_hugging_face_fast pins down.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import warnings

import numpy as np
import pytest
import torch

from clipblip.errors import ClipBlipError
from clipblip.text import BlipTokenizer, wordpiece

CAPTION_WORDS = ("a photo of dog cat red blue small large two three people man woman child sitting standing on in "
                 "the with near table street beach snow field car bus train plate pizza skateboard under next to "
                 "wooden old young black white green playing holding looking at an is are surfboard giraffe").split()
FRAGMENTS = {
    "accents": ["café", "naïve", "Ærøskøbing", "São Paulo", "Łódź", "Straße", "CAFÉ CRÈME", "Ñandú", "Dvořák",
                "Việt Nam", "ǅemal", "İstanbul", "ΟΔΟΣ ΣΟΦΟΣ", "e\u0301te\u0301", "\u0301alone", "ﬁne ﬂow"],
    "cjk": ["一只猫坐在垫子上", "猫がマットの上に座っている", "고양이가 매트 위에 앉아 있다", "dog狗cat", "東京タワー",
            "\u3400\U00020000", "ｆｕｌｌ　ｗｉｄｔｈ", "ＬＯＵＤ１２３"],
    "scripts": ["قطة تجلس على الحصيرة", "חתול יושב", "Кошка сидит", "बिल्ली चटाई पर", "แมวนั่งบนเสื่อ", "ქართული"],
    "emoji": ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣", "❤️", "dog🐶cat", "✔", "★☆"],
    "numbers": ["1234567890", "3.14159", "10,000", "2nd", "٣٤٥", "½", "x²", "Ⅻ", "①②", "007", "1e-9", "9:30pm"],
    "punctuation": ["!!!???", "...", "--", "$$$", "@#%^*", "«»", "—", "(((x)))", "~~~", ".,;:", "<>", "|", "¿¡",
                    "\\", "_", "{}[]", "don't", "it's", "isn't", "o'clock", "rock'n'roll", "it’s", "“quoted”", "'"],
    "html": ["<b>bold</b>", "&amp;", "&lt;p&gt;", "it&#39;s", "<a href=\"x.jpg\">link</a>", "&nbsp;", "<br/>",
             "https://example.com/a_b?c=1&d=2", "user@mail.com"],
    "control": ["a\x00b", "\x1b[31mred\x1b[0m", "tab\there", "dog\x0bcat", "dog\x1fcat", "line\r\nbreak", "\x7f",
                "\u200b", "zero\u200dwidth", "\ufeffbom", "\ufffd", "a\u0085b", "\u2028", "\xa0", "\u3000", "\x0c"],
    "specials": ["[SEP]", "[CLS]", "[PAD]", "[MASK]", "[UNK]", "[DEC]", "[ENC]", "x[SEP]y", "[sep]", "[Dec]",
                 "[ DEC ]", "[unused5]", "##ing", "[CLS][SEP]", "a[MASK]"],
    "long_words": ["x" * 99, "y" * 100, "z" * 101, "supercalifragilisticexpialidocious", "é" * 120,
                   "antidisestablishmentarianism"],
}
SEPARATORS = [" ", "", " ", "\t", "\n", " , ", ". "]


def _caption(rng: random.Random, n_words: int) -> str:
    text = " ".join(rng.choice(CAPTION_WORDS) for _ in range(n_words))
    return rng.choice([str.lower, str.capitalize, str.upper, str.title])(text) + rng.choice(["", ".", "!", " ."])


def make_corpus(seed: int = 0, size: int = 600) -> list[str]:
    """Every fragment alone, empty/blank and overlong texts, then random mixes of captions and fragments."""
    rng = random.Random(seed)
    corpus = ["", " ", "\t\n \xa0", *[f for kind in FRAGMENTS.values() for f in kind]]
    corpus += [_caption(rng, 700), " ".join(["🐶 café &amp; 12"] * 150), "word " * 33, "word " * 34, "a " * 510,
               "x" * 3000, "猫" * 600]
    kinds = list(FRAGMENTS)
    while len(corpus) < size:
        parts = [_caption(rng, rng.randint(0, 14))]
        parts += [rng.choice(FRAGMENTS[rng.choice(kinds)]) for _ in range(rng.randint(1, 4))]
        rng.shuffle(parts)
        corpus.append("".join(p + rng.choice(SEPARATORS) for p in parts))
    return corpus


def batches(corpus: list[str], seed: int, sizes=(1, 3, 8, 17)) -> list[list[str]]:
    rng = random.Random(seed)
    order = list(corpus)
    rng.shuffle(order)
    out, i = [], 0
    while i < len(order):
        n = rng.choice(sizes)
        out.append(order[i : i + n])
        i += n
    return out


@pytest.fixture(scope="module")
def hf_blip(tmp_path_factory):
    from transformers import BertTokenizer

    d = tmp_path_factory.mktemp("bert_uncased")
    shutil.copy(wordpiece.DEFAULT_VOCAB, d / "vocab.txt")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}))
    tok = BertTokenizer.from_pretrained(str(d))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    assert len(tok) == 30524
    assert tok.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]) == \
        [0, 100, 101, 102, 103, 30522, 30523]
    assert tok.bos_token_id == 30522 and 30523 in tok.all_special_ids
    return tok


@pytest.fixture(scope="module")
def tok():
    return BlipTokenizer()


@pytest.fixture(scope="module")
def corpus():
    c = make_corpus()
    assert len(c) >= 500
    return c


def test_ids_constants_match_vocab(tok, hf_blip):
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == \
        (hf_blip.pad_token_id, hf_blip.unk_token_id, hf_blip.cls_token_id, hf_blip.sep_token_id, hf_blip.mask_token_id)
    assert (tok.dec_id, tok.enc_id, tok.vocab_size) == (30522, 30523, 30524)
    assert tok._tok.get_vocab_size(with_added_tokens=True) == tok.vocab_size


def test_encode_matches_transformers(tok, hf_blip, corpus):
    for text in corpus:
        assert tok.encode(text) == hf_blip(text, add_special_tokens=False)["input_ids"], repr(text)


@pytest.mark.parametrize("max_length", [35, 512])
def test_batches_match_transformers(tok, hf_blip, corpus, max_length):
    truncated = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in batches(corpus, seed=max_length):
            ids, mask = tok(batch, max_length=max_length)
            ref = hf_blip(batch, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
            assert ids.dtype == mask.dtype == torch.int64
            assert torch.equal(ids, ref["input_ids"]), batch
            assert torch.equal(mask, ref["attention_mask"]), batch
            truncated += int((mask.sum(1) == max_length).sum())
    assert truncated >= 3  # the corpus does reach the limit, so the comparison covers truncation


def test_truncation_keeps_final_sep(tok):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for length in (2, 3, 35, 512):
            ids, mask = tok(["dog " * 600, "a cat"], max_length=length)
            assert ids.shape == (2, length)
            assert ids[0].tolist() == [tok.cls_id, *[3899] * (length - 2), tok.sep_id]
            assert mask[0].all()
            assert ids[1, : min(length, 4)].tolist()[-1] == tok.sep_id


@pytest.mark.parametrize("first, first_id", [("cls", 101), ("enc", 30523), ("dec", 30522)])
def test_first_token_as_blip_sets_it(tok, hf_blip, corpus, first, first_id):
    batch = [t for t in corpus[:200] if len(t) < 60][:40]
    ids, mask = tok(batch, first=first)
    ref = hf_blip(batch, padding="longest", truncation=True, max_length=35, return_tensors="pt")
    expected = ref["input_ids"].clone()
    expected[:, 0] = first_id  # what BLIP does after tokenizing: text.input_ids[:, 0] = tokenizer.enc_token_id
    assert torch.equal(ids, expected)
    assert torch.equal(mask, ref["attention_mask"])


def test_empty_and_single_texts(tok):
    ids, mask = tok("")
    assert ids.tolist() == [[101, 102]] and mask.tolist() == [[1, 1]]
    ids, mask = tok(["", "A dog."], first="dec")
    assert ids.tolist() == [[30522, 102, 0, 0, 0], [30522, 1037, 3899, 1012, 102]]
    assert mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    ids, mask = tok([])
    assert ids.shape == mask.shape == (0, 0)


def test_literal_special_text_is_the_special_id(tok, hf_blip):
    texts = ["a [SEP] b", "x[ENC]y", "[DEC]", "[sep] [Dec]", "[PAD][MASK]"]
    assert [tok.encode(t) for t in texts] == \
        [[1037, 102, 1038], [1060, 30523, 1061], [30522], [1031, 19802, 1033, 1031, 11703, 1033], [0, 103]]
    assert [tok.encode(t) for t in texts] == [hf_blip(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_truncation_warns_once_with_count(tok):
    texts = ["dog " * 40, "a cat", "cat " * 34, "dog " * 33]  # 40 and 34 pieces exceed 33; 33 fits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok(texts)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 of 4 texts" in message and "max_length=35" in message
    assert caught[0].filename == __file__  # points at the caller
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, _ = tok(texts, max_length=40)
        tok(texts[1:], max_length=40)  # nothing to cut: no warning
    assert len(caught) == 1 and "1 of 4 texts" in str(caught[0].message) and "max_length=40" in str(caught[0].message)
    assert ids.shape == (4, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok(["dog " * 33])


def _caption_ids(rng: random.Random, hf_blip) -> list[int]:
    """Ids like a decoder's output: [DEC]/[CLS], word pieces, '##' pieces, punctuation, [UNK], [SEP], padding."""
    words = hf_blip.convert_tokens_to_ids(CAPTION_WORDS + [".", ",", "?", "!", "'", "s", "t", "n", "ve", "re", "m"])
    pieces = hf_blip.convert_tokens_to_ids(["##s", "##ing", "##ed", "##y", "##er"])
    ids = [rng.choice([101, 30522, 30523])]
    for _ in range(rng.randint(0, 20)):
        r = rng.random()
        ids.append(rng.choice(pieces) if r < 0.15 else 100 if r < 0.2 else rng.randrange(999, 30522) if r < 0.3
                   else rng.choice(words))
    return ids + [102] * rng.randint(0, 1) + [0] * rng.randint(0, 4)


@pytest.mark.parametrize("skip", [True, False])
def test_decode_matches_transformers(tok, hf_blip, skip):
    rng = random.Random(1)
    rows = [_caption_ids(rng, hf_blip) for _ in range(400)]
    ours = [tok.decode(r, skip_special_tokens=skip) for r in rows]
    assert ours == [hf_blip.decode(r, skip_special_tokens=skip, clean_up_tokenization_spaces=True) for r in rows]
    assert tok.batch_decode(rows, skip_special_tokens=skip) == ours
    assert tok.decode(torch.tensor(rows[0]), skip_special_tokens=skip) == ours[0]
    assert tok.decode(np.array(rows[1]), skip_special_tokens=skip) == ours[1]


@pytest.fixture(scope="module")
def slow_blip():
    """transformers' pure-Python BertTokenizer (the class BLIP used under transformers 4.15), built as BLIP does."""
    legacy = pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")
    tok = legacy.BertTokenizerLegacy(str(wordpiece.DEFAULT_VOCAB))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    assert len(tok) == 30524 and tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [30522, 30523]
    return tok


def test_encode_matches_blips_python_tokenizer(tok, slow_blip, corpus):
    """An independent implementation (Python unicodedata, not Rust); it differs only on a final capital sigma."""
    compared = 0
    for text in corpus:
        if "Σ" not in text:
            assert tok.encode(text) == slow_blip(text, add_special_tokens=False)["input_ids"], repr(text)
            compared += 1
    assert compared > 500


def test_final_sigma_follows_hugging_face_fast(tok, hf_blip, slow_blip):
    # Python's str.lower() gives a word-final capital sigma its final form; the Rust normalizer lowercases char by
    # char. Ours is the Rust one, like Hugging Face's BLIP tokenizer; BLIP's original Python tokenizer differs here.
    upper, plain, final = "ΣΟΦΟΣ", "σοφοσ", "σοφος"
    ours = tok.encode(upper)
    assert ours == tok.encode(plain) == hf_blip(upper, add_special_tokens=False)["input_ids"]
    assert slow_blip(upper, add_special_tokens=False)["input_ids"] == tok.encode(final) != ours


@pytest.mark.parametrize("skip", [True, False])
def test_decode_equals_blips_python_decode(tok, slow_blip, skip):
    """The slow decode BLIP's captions went through: tokens joined, '##' merged, clean_up_tokenization on."""
    rng = random.Random(2)
    rows = [_caption_ids(rng, slow_blip) for _ in range(300)]
    assert [tok.decode(r, skip_special_tokens=skip) for r in rows] == \
        [slow_blip.decode(r, skip_special_tokens=skip) for r in rows]


def test_decode_round_trips_captions(tok):
    rng = random.Random(3)
    captions = [" ".join(rng.choice(CAPTION_WORDS) for _ in range(rng.randint(1, 12))) + rng.choice(["", ".", "?"])
                for _ in range(100)] + ["a dog's toy, isn't it?", "they're here!", "i'm ok, you've won."]
    ids, _ = tok(captions, first="dec", max_length=64)
    assert tok.batch_decode(ids) == captions
    assert tok.batch_decode(ids[:, :1]) == [""] * len(captions)
    assert tok.decode(ids[0], skip_special_tokens=False).startswith("[DEC] ")


def test_bad_inputs_raise_clipblip_error(tok):
    for bad in (123, None, b"a dog", ["a", None], ["a", b"b"], {"a"}):
        with pytest.raises(ClipBlipError):
            tok(bad)
    with pytest.raises(ClipBlipError, match="decode bytes"):
        tok.encode(b"a dog")
    with pytest.raises(ClipBlipError):
        tok.encode(["a dog"])
    for kwargs in ({"first": "bos"}, {"first": None}, {"max_length": 1}, {"max_length": True}, {"max_length": 3.5}):
        with pytest.raises(ClipBlipError):
            tok("a dog", **kwargs)
    with pytest.raises(ClipBlipError):
        BlipTokenizer(max_length=0)
    for bad_ids in ([101, 30524], [-1], torch.zeros(2, 3, dtype=torch.long), "abc", [1.5]):
        with pytest.raises(ClipBlipError):
            tok.decode(bad_ids)
    with pytest.raises(ClipBlipError):
        tok.batch_decode(torch.zeros(3, dtype=torch.long))


def test_bad_vocab_file(tmp_path):
    with pytest.raises(ClipBlipError, match="cannot read"):
        BlipTokenizer(vocab_path=tmp_path / "missing.txt")
    short = tmp_path / "short.txt"
    short.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(ClipBlipError, match="not the bert-base-uncased vocab"):
        BlipTokenizer(vocab_path=short)


def test_pickle_and_backend_cache(tok):
    clone = pickle.loads(pickle.dumps(BlipTokenizer(max_length=20)))
    assert clone.max_length == 20 and clone._tok is tok._tok
    copy_of_vocab = BlipTokenizer(vocab_path=str(wordpiece.DEFAULT_VOCAB))
    assert copy_of_vocab._tok is tok._tok
    ids, mask = clone(["a dog on a beach", "two cats"])
    assert torch.equal(ids, tok(["a dog on a beach", "two cats"], max_length=20)[0])
