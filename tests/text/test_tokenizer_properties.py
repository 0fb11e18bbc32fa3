"""Property-based tests of every tokenizer (hypothesis): any text, lone surrogates (what Python makes of an undecodable
argv byte), control characters and very long strings included, tokenizes without raising, to ids inside the
vocabulary, in rows of the promised shape that start and end with the promised ids; encode and decode never raise."""

import functools

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clipblip.text import BlipTokenizer, BlipWordTokenizer, ClipTokenizer, ClipWordTokenizer
from clipblip.text.wordlevel import BERT_SPECIALS, CLIP_SPECIALS, full_vocab

WORDS = ["a", "red", "circle", "left", "of", "blue", "square", ".", "?", "ÿ", "日本"]
HOSTILE = ["\udcff", "\ud800", "\udc80", "\ud83d\ude00", "\x00", "\x1b[31m", "\u202e", "\ufeff", "\r\n", "\ufffd",
           "[SEP]", "<|endoftext|>", "&amp;", "\U0010ffff", "\u0345"]

characters = st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                       st.characters(max_codepoint=0x1F))
texts = st.one_of(
    st.text(characters, max_size=200),
    st.lists(st.sampled_from(HOSTILE + WORDS + [" "]), max_size=40).map("".join),
    st.builds(lambda piece, n: piece * n, st.text(characters, min_size=1, max_size=8), st.integers(100, 4000)),
)
batches = st.lists(texts, min_size=1, max_size=4)
PROPERTY = settings(max_examples=150, deadline=5000)
pytestmark = pytest.mark.filterwarnings("ignore:.*were truncated:UserWarning")  # long texts are meant to be cut
SURROGATES = ["a\udcffb", "\ud800", "x\udc80\ud83d", "\udcff" * 300]


@functools.cache
def clip():
    return ClipTokenizer(context_length=16)


@functools.cache
def blip():
    return BlipTokenizer(max_length=12)


@functools.cache
def words():
    return (ClipWordTokenizer(full_vocab(WORDS, CLIP_SPECIALS), context_length=10),
            BlipWordTokenizer(full_vocab(WORDS, BERT_SPECIALS), max_length=10))


def _check_clip_rows(tok, ids: torch.Tensor, n: int) -> None:
    """[n, context_length] int64, each row sot ... eot then pad, every id in the vocabulary. (A text may hold
    "<|endoftext|>" itself, which OpenAI's tokenizer turns into eot too: the row's last eot is the one that ends it.)"""
    assert ids.shape == (n, tok.context_length) and ids.dtype == torch.int64
    assert ((ids >= 0) & (ids < tok.vocab_size)).all()
    for row in ids.tolist():
        assert row[0] == tok.sot_id and tok.eot_id in row[1:]
        end = len(row) - 1 - row[::-1].index(tok.eot_id)
        assert all(i == tok.pad_id for i in row[end + 1 :])


def _check_blip_rows(tok, ids: torch.Tensor, mask: torch.Tensor, n: int, first_id: int, width: int | None) -> None:
    """[n, L] int64 with L <= max_length (== width when given), rows [first] ... [SEP] then pad, mask on the row."""
    assert ids.shape == mask.shape and ids.shape[0] == n and ids.dtype == torch.int64
    assert ids.shape[1] <= tok.max_length and (width is None or ids.shape[1] == width)
    assert ((ids >= 0) & (ids < tok.vocab_size)).all()
    for row, m in zip(ids.tolist(), mask.tolist()):
        length = sum(m)
        assert m == [1] * length + [0] * (len(m) - length)
        assert row[0] == first_id and row[length - 1] == tok.sep_id
        assert all(i == tok.pad_id for i in row[length:])


@PROPERTY
@given(batch=batches)
@example(batch=SURROGATES)
def test_clip_bpe_never_raises(batch):
    tok = clip()
    ids = tok(batch)
    _check_clip_rows(tok, ids, len(batch))
    for text, row in zip(batch, ids):
        assert all(0 <= i < tok.vocab_size for i in tok.encode(text))
        assert isinstance(tok.decode(row), str)


@PROPERTY
@given(batch=batches, first=st.sampled_from(["cls", "enc", "dec"]), pad_to_max=st.booleans())
@example(batch=SURROGATES, first="cls", pad_to_max=False)
def test_wordpiece_never_raises(batch, first, pad_to_max):
    tok = blip()
    ids, mask = tok(batch, first=first, pad_to_max=pad_to_max)
    first_id = {"cls": tok.cls_id, "enc": tok.enc_id, "dec": tok.dec_id}[first]
    _check_blip_rows(tok, ids, mask, len(batch), first_id, tok.max_length if pad_to_max else None)
    for text in batch:
        assert all(0 <= i < tok.vocab_size for i in tok.encode(text))
    assert len(tok.batch_decode(ids)) == len(batch)


@PROPERTY
@given(batch=batches, pad_to_max=st.booleans())
@example(batch=SURROGATES, pad_to_max=False)
def test_word_level_never_raises(batch, pad_to_max):
    clip_words, blip_words = words()
    _check_clip_rows(clip_words, clip_words(batch), len(batch))
    ids, mask = blip_words(batch, pad_to_max=pad_to_max)
    _check_blip_rows(blip_words, ids, mask, len(batch), blip_words.cls_id,
                     blip_words.max_length if pad_to_max else None)
    for text in batch:
        assert all(0 <= i < clip_words.vocab_size for i in clip_words.encode(text))
    assert len(blip_words.batch_decode(ids)) == len(batch)


def test_invalid_text_is_replaced_as_clip_bpe_does():
    """Lone surrogates become U+FFFD and split pairs join, for every tokenizer alike: the word-level ones then see
    unknown words, as they would for U+FFFD itself."""
    clip_words, blip_words = words()
    for tok in (clip_words, blip_words):
        assert tok.encode("red\udcffcircle") == tok.encode("red\ufffdcircle")
        assert tok.encode("\ud83d\ude00") == tok.encode("\U0001f600")
    assert blip().encode("red\udcff") == blip().encode("red\ufffd") == blip().encode("red")
    assert clip().encode("red\udcffcircle") == clip().encode("red\ufffdcircle")
