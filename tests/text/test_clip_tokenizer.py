"""ClipTokenizer against OpenAI's tokenizer, open_clip's copy of it, and transformers' CLIPTokenizer.

The references disagree with each other on a few inputs, so each comparison says which inputs it leaves out and why:
- open_clip renamed the specials to "<start_of_text>"/"<end_of_text>", so a literal "<|endoftext|>" in a text is
  plain BPE there but the eot id in OpenAI's tokenizer (and ours); "<end_of_text>" is the reverse.
- transformers 5 has no Python CLIPTokenizer any more; its CLIPTokenizer is `tokenizers`-backed, normalizes with NFC
  instead of ftfy + html.unescape, finds special-token text anywhere (OpenAI only where its regex puts a piece
  boundary), and uses Oniguruma's `\\p{L}` without IGNORECASE. It is fed texts already cleaned by OpenAI's steps, and
  texts on which its split provably differs are left out.
"""

from __future__ import annotations

import html
import pickle
import random
import string

import ftfy
import numpy as np
import pytest
import regex
import torch
from tokenizers import Regex, pre_tokenizers

from clipblip.errors import ClipBlipError
from clipblip.text import ClipTokenizer, clip_bpe

OPENAI_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
LITERALS = ("<|startoftext|>", "<|endoftext|>", "<start_of_text>", "<end_of_text>")
# Where either reference's regex sees a special token's text (IGNORECASE: "<|ſtartoftext|>" counts too).
LITERAL_RE = regex.compile("|".join(regex.escape(lit) for lit in LITERALS), regex.IGNORECASE)

# Hand-picked fragments, one list per kind of trouble; the corpus mixes them at random.
CAPTION_WORDS = ("a photo of a dog cat red blue small large two three people man woman child sitting standing on in "
                 "the with near table street beach snow field car bus train plate pizza skateboard under next to "
                 "wooden old young black white green playing holding looking at an is are").split()
FRAGMENTS = {
    "accents": ["café", "naïve", "Ærøskøbing", "São Paulo", "Łódź", "Straße", "CAFÉ CRÈME", "Ça va", "Ñandú",
                "Dvořák", "Việt Nam", "ǅemal", "İstanbul", "ΟΔΟΣ ΣΟΦΟΣ", "e\u0301te\u0301"],
    "emoji": ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣", "❤️", "👩🏿‍🚀", "🐶🐱", "✔"],
    "scripts": ["一只猫坐在垫子上", "猫がマットの上に座っている", "고양이가 매트 위에 앉아 있다", "قطة تجلس على الحصيرة",  # noqa: E501 (wide characters)
                "חתול יושב על השטיח", "Кошка сидит на коврике", "बिल्ली चटाई पर बैठी है", "แมวนั่งบนเสื่อ",
                "Η γάτα κάθεται", "ქართული", "ᠮᠣᠩᠭᠣᠯ"],
    "html": ["&amp;", "&lt;b&gt;bold&lt;/b&gt;", "it&#39;s", "&amp;amp;", "&amp;amp;amp;", "&quot;hi&quot;",
             "a&nbsp;b", "&#x1F600;", "&eacute;t&eacute;", "P&EACUTE;REZ", "AT&T", "&amp", "&amp;lt;", "&#0;",
             "&#xd800;", "&#x85;", "&#x2028;", "&#x1c;", "&#xfb06;"],
    "contractions": ["DON'T", "It'S", "we'RE", "they'll", "I'M", "she'D", "'s'", "''s", "rock'n'roll", "it’s",
                     "YOU'VE", "o'clock", "'ll'd", "it'ſ", "'"],
    "numbers": ["1234567890", "3.14159", "10,000", "2nd", "٣٤٥", "½", "x²", "Ⅻ", "①②", "007", "1e-9", "९९"],
    "punctuation": ["!!!???", "...", "--", "$$$", "@#%^*", "«»", "—", "(((x)))", "~~~", ".,;:", "<>", "|", "¿¡",
                    "***", "\\", "_", "{}[]"],
    "whitespace": ["\t", "\n", "\r\n", "\xa0", "\u3000", "\u2003", "\u200b", "  ", "\x0b", "\x0c", "\x85", "\u2029",
                   "dog\x0bcat", "dog\x1fcat", "dog\rcat"],
    "literals": [*LITERALS, "<|ENDOFTEXT|>", "<|ſtartoftext|>", "<|&#xfb06;artoftext|>", "!<|endoftext|>",
                 "<|endoftext|><|endoftext|>", "<|startoftext", "endoftext|>", "</w>"],
    "mojibake": ["cafÃ©", "â€œquotedâ€\x9d", "Ã¼ber", "âœ” done", "ã\x83\x84", "Ã\xa0 la", "doesnâ€™t", "Ã©tÃ©"],
    "rare": ["x\u0345y", "a\U00010940b", "ﬁne ﬂow", "ＬＯＵＤ", "\x1b[31mred\x1b[0m", "a\x00b", "\ufeffbom", "\U0001D400"],  # noqa: E501 (wide characters)
}
SEPARATORS = [" ", "", " ", "\t", "\n", "\xa0", " , "]


def _caption(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(CAPTION_WORDS) for _ in range(n_words)]
    text = " ".join(words)
    return rng.choice([str.lower, str.capitalize, str.upper, str.title])(text) + rng.choice(["", ".", "!", " ."])


def make_corpus(seed: int = 0, size: int = 1200) -> list[str]:
    """Every fragment alone, then random mixes of captions and fragments, empty/blank and overlong texts."""
    rng = random.Random(seed)
    corpus = ["", " ", "\t\n \xa0", *[f for kind in FRAGMENTS.values() for f in kind]]
    corpus += [_caption(rng, 400), " ".join(["🐶 café &amp; 12"] * 120), "word " * 76, "x" * 3000]
    kinds = list(FRAGMENTS)
    while len(corpus) < size:
        parts = [_caption(rng, rng.randint(1, 12))]
        parts += [rng.choice(FRAGMENTS[rng.choice(kinds)]) for _ in range(rng.randint(1, 4))]
        rng.shuffle(parts)
        text = "".join(p + rng.choice(SEPARATORS) for p in parts)
        if rng.random() < 0.05:  # now and then a few random code points, BMP blocks and supplementary planes
            text += "".join(chr(rng.choice([rng.randrange(0x80, 0x3000), rng.randrange(0x10000, 0x30000)]))
                            for _ in range(3))
        corpus.append(text)
    return corpus


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return make_corpus()


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return ClipTokenizer()


@pytest.fixture(scope="module")
def open_clip():
    from _torchvision_shim import import_open_clip

    return import_open_clip()


def openai_clean(text: str) -> str:
    """OpenAI's basic_clean + whitespace_clean + lower, verbatim (open_clip collapses with str.split instead)."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


@pytest.fixture(scope="module")
def openai_ref(open_clip):
    """OpenAI's SimpleTokenizer: open_clip's copy of it with OpenAI's special-token text and cleaning put back."""
    ref = open_clip.tokenizer.SimpleTokenizer()
    for theirs, ours in (("<start_of_text>", "<|startoftext|>"), ("<end_of_text>", "<|endoftext|>")):
        ref.encoder[ours] = ref.encoder.pop(theirs)
        ref.decoder[ref.encoder[ours]] = ours
        ref.cache = {ours: ours, **{k: v for k, v in ref.cache.items() if k != theirs}}
    ref.pat = regex.compile(OPENAI_PATTERN, regex.IGNORECASE)
    ref.clean_fn = openai_clean
    return ref


def test_matches_openai_reference_on_corpus(tok, openai_ref, corpus):
    assert len(corpus) >= 1000
    ours = tok(corpus)
    theirs = openai_ref(corpus)
    bad = [(corpus[i], ours[i], theirs[i]) for i in range(len(corpus)) if not torch.equal(ours[i], theirs[i])]
    assert not bad, f"{len(bad)} texts differ, first: {bad[0]}"
    assert any((row == tok.eot_id).sum() > 1 for row in ours), "corpus lost its literal <|endoftext|> cases"
    assert (ours[:, -1] == tok.eot_id).sum() >= 3, "corpus lost its overlong texts"


def test_encode_matches_openai_encode(tok, openai_ref, corpus):
    for text in corpus[:300]:
        assert tok.encode(text) == openai_ref.encode(text), text


def test_matches_open_clip_tokenize(tok, open_clip, corpus):
    plain = [t for t in corpus if not LITERAL_RE.search(openai_clean(t))]
    assert len(plain) > 900
    assert torch.equal(tok(plain), open_clip.tokenize(plain))
    assert torch.equal(tok(plain, context_length=16), open_clip.tokenize(plain, context_length=16))
    # Where they differ: open_clip spells the specials differently; we follow OpenAI.
    a, b = tok(["a<|endoftext|>b", "a<end_of_text>b"]), open_clip.tokenize(["a<|endoftext|>b", "a<end_of_text>b"])
    assert a[0, 2] == tok.eot_id and b[0, 2] != tok.eot_id
    assert a[1, 2] != tok.eot_id and b[1, 2] == tok.eot_id


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory, tok):
    from transformers import CLIPTokenizer

    directory = tmp_path_factory.mktemp("hf_clip_vocab")
    clip_bpe.write_hf_vocab_files(directory)
    # CLIPTokenizer(vocab_file=..., merges_file=...) silently builds a 2-token vocab in transformers 5; this works.
    hf = CLIPTokenizer.from_pretrained(str(directory))
    assert len(hf) == tok.vocab_size
    return hf


_HF_SPLIT = pre_tokenizers.Split(Regex(OPENAI_PATTERN), behavior="removed", invert=True)


def hf_splits_differently(cleaned: str) -> bool:
    """Texts on which transformers' split provably differs from OpenAI's (see the module docstring)."""
    if "<|startoftext|>" in cleaned or "<|endoftext|>" in cleaned:
        return True
    pieces = [p for p, _ in _HF_SPLIT.pre_tokenize_str(cleaned)]
    return pieces != regex.findall(OPENAI_PATTERN, cleaned, flags=regex.IGNORECASE)


def test_matches_transformers_clip_tokenizer(tok, hf_tokenizer, corpus):
    # Cleaning is not idempotent (ftfy turns "&#xfb06;" into "ﬆ", then "st" on a second pass): ours gets the raw text.
    kept = [(t, c) for t, c in ((t, openai_clean(t)) for t in corpus) if not hf_splits_differently(c)]
    assert len(kept) > 900
    raw, cleaned = [t for t, _ in kept], [c for _, c in kept]
    hf = hf_tokenizer(cleaned, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    hf = hf["input_ids"]
    ours = tok(raw)
    for i, text in enumerate(raw):
        end = int((ours[i] == tok.eot_id).nonzero()[-1]) + 1  # HF pads with eot: compare through our eot
        assert torch.equal(ours[i, :end], hf[i, :end]), text
        assert (ours[i, end:] == tok.pad_id).all() and (hf[i, end:] == tok.eot_id).all()
    assert torch.equal(ClipTokenizer(pad_id=tok.eot_id)(raw), hf)


def test_split_pattern_agrees_with_regex_module_on_sampled_code_points():
    """Our Oniguruma pattern against the `regex` module itself, including the code points where \\p{L} and
    IGNORECASE differ between the two engines (U+0345, 'ſ', ligatures, letters newer than Oniguruma's tables)."""
    ours = pre_tokenizers.Split(Regex(clip_bpe._split_pattern()), behavior="removed", invert=True)
    rng = random.Random(1)
    tricky = [0x345, 0x17F, 0x212A, 0xFB06, 0x558, 0xA7CE, 0x10940, 0x1E030, 0x31350]
    points = tricky + [c for c in (rng.randrange(0x110000) for _ in range(8000)) if not 0xD800 <= c < 0xE000]
    for cp in points:
        c = chr(cp)
        text = f"a{c}a 1{c}1 !{c}! '{c} {c} <|{c}tartoftext|>"
        assert [p for p, _ in ours.pre_tokenize_str(text)] == regex.findall(OPENAI_PATTERN, text, regex.I), hex(cp)


def test_ascii_fast_path_skips_only_identity_cleaning():
    """clean_text skips ftfy and html.unescape on printable ASCII without '&' (plus tab/newline): check the claim."""
    rng = random.Random(2)
    alphabet = "".join(c for c in string.printable if c not in "&\r\x0b\x0c") + "\t\n"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    texts += ["<b>hi</b>", "a;b", "#39;", "it's \"quoted\"", "\\x1b[0m"]
    for text in texts:
        assert html.unescape(html.unescape(ftfy.fix_text(text))) == text, repr(text)
        assert clip_bpe.clean_text(text) == openai_clean(text)
    for needs_cleaning in ["AT&amp;T", "a\rb", "a\x0bb", "caf\u00e9", "a\x1b[31mb"]:
        assert clip_bpe._NOT_PLAIN_ASCII.search(needs_cleaning), repr(needs_cleaning)


def test_special_ids_and_literal_special_text(tok):
    assert (tok.sot_id, tok.eot_id, tok.vocab_size, tok.context_length, tok.pad_id) == (49406, 49407, 49408, 77, 0)
    a, b = tok.encode("a"), tok.encode("b")
    # OpenAI: the literal is the special id where its regex starts a piece there, plain BPE inside a punctuation run.
    assert tok.encode("a<|endoftext|>b") == [*a, tok.eot_id, *b]
    assert tok.encode("<|StartOfText|> a") == [tok.sot_id, *a]
    assert tok.eot_id not in tok.encode("!<|endoftext|>")
    assert tok.sot_id not in tok.encode("<start_of_text>")


def test_truncation_keeps_eot_last(tok):
    words = [f"w{i}" for i in range(200)]
    ids = tok.encode(" ".join(words))
    for length in (77, 16, 2):
        row = tok(" ".join(words), context_length=length)[0]
        assert row.tolist() == [tok.sot_id, *ids[: length - 2], tok.eot_id]
    fits = tok.encode("dog " * 75)
    assert len(fits) == 75 and tok("dog " * 75)[0].tolist() == [tok.sot_id, *fits, tok.eot_id]
    over = tok("dog " * 76)[0].tolist()
    assert over == [tok.sot_id, *fits, tok.eot_id]  # one id too many: the 76th is dropped, eot stays


def test_padding_context_length_and_batch_shapes(tok):
    texts = ["a photo of a dog", "", "a much longer caption about a small red car parked near the old station"]
    rows = tok(texts, context_length=24)
    assert rows.shape == (3, 24) and rows.dtype == torch.int64
    for text, row in zip(texts, rows):
        n = len(tok.encode(text)) + 2
        assert row[:n].tolist() == [tok.sot_id, *tok.encode(text), tok.eot_id]
        assert (row[n:] == 0).all()
    eot_padded = ClipTokenizer(context_length=24, pad_id=tok.eot_id)(texts)
    assert torch.equal(eot_padded[rows != 0], rows[rows != 0])
    assert (eot_padded[rows == 0] == tok.eot_id).all()
    assert ClipTokenizer(context_length=10)("x").shape == (1, 10)
    assert tok("a photo").shape == (1, 77) and torch.equal(tok("a photo")[0], tok(["a photo", "b"])[0])
    assert tok([]).shape == (0, 77)


def test_decode_round_trip(tok):
    texts = ["a photo of a dog", "two cats sleeping on a red sofa, 2024!", "it's a bird... no, it's a plane"]
    for text in texts:
        assert tok.decode(tok.encode(text)) == tok.decode(tok(text)[0])
        assert tok.decode(tok(text)[0]) == " ".join(regex.findall(OPENAI_PATTERN, text, regex.I))
    assert tok.decode(tok("a photo of a dog")[0]) == "a photo of a dog"
    # id 0 is also the token '!': only the trailing run counts as padding
    assert 0 in tok.encode("no!;") and tok.decode(tok("no!;")[0]) == "no !;"
    assert tok.decode(torch.tensor([tok.sot_id, *tok.encode("a dog"), tok.eot_id, 0, 0])) == "a dog"
    assert ClipTokenizer(pad_id=tok.eot_id).decode(ClipTokenizer(pad_id=tok.eot_id)("a dog")[0]) == "a dog"
    assert tok.decode(np.array(tok.encode("café"))) == "café"


@pytest.mark.parametrize("bad", [None, 3, b"a photo", ["ok", 4], ("ok", None), np.array(["a"])])
def test_non_text_input_raises_clear_error(tok, bad):
    with pytest.raises(ClipBlipError, match="str"):
        tok(bad)
    if not isinstance(bad, (list, tuple, np.ndarray)):
        with pytest.raises(ClipBlipError, match="str"):
            tok.encode(bad)


def test_bad_options_raise_clear_errors(tok, tmp_path):
    for length in (0, 1, 7.5, "77", True):
        with pytest.raises(ClipBlipError, match="context_length"):
            tok("a", context_length=length)
    for pad in (-1, 49408, 1.0, None):
        with pytest.raises(ClipBlipError, match="pad_id"):
            ClipTokenizer(pad_id=pad)
    with pytest.raises(ClipBlipError, match="cannot read"):
        ClipTokenizer(vocab_path=tmp_path / "missing.txt.gz")
    (tmp_path / "short.txt").write_text("#version\na b\n")
    with pytest.raises(ClipBlipError, match="not a CLIP merges file"):
        ClipTokenizer(vocab_path=tmp_path / "short.txt")
    with pytest.raises(ClipBlipError, match="outside"):
        tok.decode([49408])
    with pytest.raises(ClipBlipError, match="1-D"):
        tok.decode(tok(["a", "b"]))


def test_pickles_small_and_rebuilds_same_settings():
    original = ClipTokenizer(context_length=20, pad_id=np.int64(7))
    blob = pickle.dumps(original)
    clone = pickle.loads(blob)
    assert len(blob) < 10_000  # settings only, not the vocabulary
    assert (clone.context_length, clone.pad_id) == (20, 7)
    assert torch.equal(clone(["a dog", "two cats"]), original(["a dog", "two cats"]))
