"""Byte-level tokens that hold parts of characters: kept lossless, merged back into whole characters."""

from __future__ import annotations

import pytest

from compute.ml.lm import LoadedModel, _symbol_bytes
from compute.ml.tokens import merge, merged_texts, merged_values, piece_index, printable
from tests.ml_factories import MULTIBYTE_TEXT, byte_level_tokenizer, trained_byte_level_tokenizer

SCRIPTS = {
    "bengali": "আমি বাংলায় গান গাই।",
    "cjk": "日本語のテキスト、東京。",
    "emoji": "Emoji 😀👍🏽 and 👨‍👩‍👧",
    "mixed": MULTIBYTE_TEXT,
}


def _loaded(tokenizer) -> LoadedModel:
    """Only the tokenizer matters to `to_str_tokens`."""
    return LoadedModel(
        model=None, tokenizer=tokenizer, name="t", d_model=1, n_layers=1, special_token_ids=set(), hook_names=[], unembed=None
    )  # fmt: skip


@pytest.fixture(scope="module", params=["bytes", "trained-bpe"])
def loaded(request):
    return _loaded(byte_level_tokenizer() if request.param == "bytes" else trained_byte_level_tokenizer())


def _char_byte_ends(text: str) -> set[int]:
    """Byte offsets at which a character ends, computed from the text alone."""
    ends, at = set(), 0
    for ch in text:
        at += len(ch.encode("utf-8"))
        ends.add(at)
    return ends


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_merged_pieces_spell_the_text_and_cut_only_between_characters(loaded, script):
    text = SCRIPTS[script]
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    tokens = loaded.to_str_tokens(ids)
    plain = [loaded.tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in t for t in plain), "the tokenizer should split some character over tokens"
    pieces = merge(tokens)
    texts = [printable(p.text) for p in pieces]
    assert "".join(texts) == text and not any("\ufffd" in t for t in texts)
    # every piece ends where a character ends, and is no longer than needed: a piece of several tokens has
    # no character boundary at any of its inner token boundaries
    char_ends = _char_byte_ends(text)
    byte_ends = [len("".join(texts[: k + 1]).encode()) for k in range(len(texts))]
    assert set(byte_ends) <= char_ends
    for p in pieces:
        inner = [len("".join(tokens[: j + 1]).encode("utf-8", "surrogateescape")) for j in range(p.start, p.stop - 1)]
        assert not char_ends.intersection(inner)
    assert [p.start for p in pieces] == [0, *[p.stop for p in pieces[:-1]]] and pieces[-1].stop == len(ids)


def test_a_window_cut_mid_character_shows_the_left_over_bytes_escaped():
    loaded = _loaded(byte_level_tokenizer())
    text = "জল"  # জ = e0 a6 9c, ল = e0 a6 b2
    tokens = loaded.to_str_tokens(loaded.tokenizer.encode(text, add_special_tokens=False))
    assert len(tokens) == 6
    texts, values = merged_texts(tokens[1:5], [0.1, 0.2, 0.3, 0.4])
    assert texts == ["\\xa6", "\\x9c", "\\xe0\\xa6"] and values == [0.1, 0.2, 0.4]
    assert "".join(texts).encode("ascii")  # safe to encode and store anywhere


def test_piece_values_are_the_largest_of_their_tokens_and_the_centre_follows():
    loaded = _loaded(byte_level_tokenizer())
    tokens = loaded.to_str_tokens(loaded.tokenizer.encode("a😀b", add_special_tokens=False))
    pieces = merge(tokens)
    assert [p.text for p in pieces] == ["a", "😀", "b"] and [(p.start, p.stop) for p in pieces][1] == (1, 5)
    assert merged_values(pieces, [0, 1, 5, 2, 0, 3]) == [0, 5, 3]
    assert [piece_index(pieces, i) for i in range(6)] == [0, 1, 1, 1, 1, 2]


def test_ascii_and_whitespace_never_merge_into_a_neighbour():
    # a lead byte followed by a space is invalid UTF-8: the space stays a token of its own
    pieces = merge(["\udce0", " ", "x"])
    assert [(printable(p.text), p.start, p.stop) for p in pieces] == [("\\xe0", 0, 1), (" ", 1, 2), ("x", 2, 3)]


def test_vocabulary_symbols_map_back_to_their_bytes():
    assert _symbol_bytes("<0xE0>") == b"\xe0"  # SentencePiece byte fallback
    assert _symbol_bytes("Ġà¦") == b" \xe0\xa6"  # GPT-2 byte-level alphabet
    assert _symbol_bytes("▁word") is None and _symbol_bytes(None) is None
