"""Token strings that keep their bytes, and tokens merged into whole characters for display (pure Python).

A byte-level BPE token can hold only part of a character (a Bengali letter or an emoji is 3–4 UTF-8
bytes, often split over 2–4 tokens). Decoded on its own such a token is U+FFFD. We keep each token's
string lossless instead: bytes that do not form a complete character are carried as lone surrogates
U+DC80–U+DCFF (Python's `surrogateescape`, PEP 383), so the tokens of a window can be joined again into
the characters they spell. Lone surrogates must never leave the server: every text shown or exported goes
through `merge` (tokens → pieces of whole characters) and `printable` (a byte left over, e.g. where a
window starts mid-character, written as `\\xNN`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_STRAY_LO, _STRAY_HI = 0xDC80, 0xDCFF


def lossless(data: bytes) -> str:
    """Bytes as text; bytes that are not part of a complete UTF-8 character become lone surrogates."""
    return data.decode("utf-8", "surrogateescape")


def token_bytes(text: str) -> bytes:
    """The bytes a `lossless` token string stands for."""
    return text.encode("utf-8", "surrogateescape")


def is_stray(ch: str) -> bool:
    """A byte that is not part of a complete character (a lone surrogate from `lossless`)."""
    return _STRAY_LO <= ord(ch) <= _STRAY_HI


def stray_byte(ch: str) -> int:
    return ord(ch) - 0xDC00


def printable(text: str) -> str:
    """`text` with every stray byte written as `\\xNN` (safe to encode, store as JSON and show)."""
    if not any(is_stray(ch) for ch in text):
        return text
    return "".join(f"\\x{stray_byte(ch):02x}" if is_stray(ch) else ch for ch in text)


def _incomplete_tail(data: bytes) -> bool:
    """Whether `data` ends inside a UTF-8 sequence (a lead byte still waiting for continuation bytes)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # continuation byte: look further back for its lead
            continue
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return need > back
    return False


@dataclass(frozen=True)
class Piece:
    """Tokens [start, stop) of a window shown as one unit; `text` is lossless (stray bytes as surrogates)."""

    text: str
    start: int
    stop: int

    def covers(self, index: int) -> bool:
        return self.start <= index < self.stop


def merge(tokens: Sequence[str]) -> list[Piece]:
    """Consecutive tokens joined where a character spans them; every other token is a piece of its own.

    A token joins the piece before it when that piece ends inside a UTF-8 sequence and the token starts
    with a continuation byte, so whitespace or an ASCII token never disappears into a neighbour.
    """
    pieces: list[Piece] = []
    pending, start = b"", 0
    for i, token in enumerate(tokens):
        data = token_bytes(token)
        if pending and data and _incomplete_tail(pending) and data[0] & 0xC0 == 0x80:
            pending += data
            continue
        if i:
            pieces.append(Piece(lossless(pending), start, i))
        pending, start = data, i
    if tokens:
        pieces.append(Piece(lossless(pending), start, len(tokens)))
    return pieces


def merged_values(pieces: Sequence[Piece], values: Sequence[float]) -> list[float]:
    """Each piece's value: the largest of its tokens' (a character is as active as its most active byte)."""
    return [max(values[p.start : p.stop]) for p in pieces]


def merged_texts(tokens: Sequence[str], values: Sequence[float]) -> tuple[list[str], list[float]]:
    """(printable piece texts, piece values) of a window: what prompts and exports show."""
    pieces = merge(tokens)
    return [printable(p.text) for p in pieces], merged_values(pieces, values)


def piece_index(pieces: Sequence[Piece], token_index: int) -> int:
    """The index of the piece holding token `token_index` (-1 when none does)."""
    return next((k for k, p in enumerate(pieces) if p.covers(token_index)), -1)
