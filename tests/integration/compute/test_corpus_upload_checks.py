"""A corpus upload is checked when it arrives: each bad kind of file is refused with a message naming the line or
byte, and nothing is stored (the artifact storage is listed before and after)."""

from __future__ import annotations

import io
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from compute.forms import CorpusAdminForm
from compute.models import Corpus
from compute.services.registry import RegistryError, corpus_register, corpus_texts

pytestmark = pytest.mark.django_db


def _parquet(column: str, values: list[str]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({column: values}), buffer)
    return buffer.getvalue()


GOOD_TEXT = b"First paragraph about sets.\n\nSecond paragraph.\n"
BAD_FILES = [
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"not UTF-8 text \(binary\?\).*at byte 0 \(line 1\)"),
    ("latin1.txt", "caf\u00e9 au lait\n".encode("latin-1"), r"not UTF-8.*byte 3 \(line 1\)"),
    ("broken.jsonl", b'{"text": "fine"}\n{"text": \n', r"line 2 is not JSON"),
    ("nofield.jsonl", b'{"text": "fine"}\n{"body": "x"}\n', r"line 2 has no field 'text'"),
    ("broken.parquet", b"PAR1 this is not parquet at all PAR1", r"not a readable parquet file"),
    ("wrong.parquet", _parquet("body", ["a", "b"]), r"no column 'text'"),
    ("columns.csv", b"title,body\nA,some text\n", r"no column 'text'"),
    ("tail.txt", GOOD_TEXT + b"\nthen \xff\xfe\x00\x01 binary\n", r"not UTF-8.*at byte 53 \(line 5\)"),
    ("nul.txt", b"plain words\n\nand a \x00 NUL\n", r"binary, not text: a NUL byte at byte 19 \(line 3\)"),
    ("empty.txt", b"\n\n   \n", r"holds no text"),
]


def _listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize(("filename", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_uploads_are_refused_and_nothing_is_stored(artifacts, filename, content, message):
    before = _listing(artifacts)
    form = CorpusAdminForm(
        data={"name": "bad", "kind": "domain", "source": "upload", "split": "train", "text_column": "text",
              "options": "{}"},
        files={"upload": SimpleUploadedFile(filename, content)},
    )  # fmt: skip
    assert not form.is_valid()
    assert form.errors["upload"][0] and re.search(message, form.errors["upload"][0])
    with pytest.raises(RegistryError, match=message):
        corpus_register(name="bad", kind="domain", source="upload", upload=SimpleUploadedFile(filename, content))
    assert _listing(artifacts) == before
    assert not Corpus.objects.filter(name="bad").exists()


def test_good_uploads_are_stored(artifacts):
    corpus = corpus_register(
        name="good", kind="domain", source="upload", upload=SimpleUploadedFile("sets.txt", GOOD_TEXT)
    )
    assert _listing(artifacts) == [corpus.upload.name]
    form = CorpusAdminForm(
        data={"name": "good-csv", "kind": "domain", "source": "upload", "split": "train", "text_column": "body",
              "options": "{}"},
        files={"upload": SimpleUploadedFile("rows.csv", b"title,body\nA,some text\n")},
    )  # fmt: skip
    assert form.is_valid(), form.errors


@pytest.mark.parametrize(
    ("filename", "content", "texts"),
    [
        ("notes.TXT", GOOD_TEXT, ["First paragraph about sets.", "Second paragraph."]),
        ("rows.JSONL", b'{"text": "one"}\n{"text": "two"}\n', ["one", "two"]),
        ("table.Csv", b"id,text\n1,a row\n", ["a row"]),
        ("cols.PARQUET", _parquet("text", ["from parquet"]), ["from parquet"]),
    ],
    ids=["TXT", "JSONL", "Csv", "PARQUET"],
)
def test_upper_case_suffixes_are_accepted_stored_and_read(artifacts, filename, content, texts):
    """The suffix's case does not matter: the file is checked, stored and later read as its kind, not as empty."""
    form = CorpusAdminForm(
        data={"name": "upper", "kind": "domain", "source": "upload", "split": "train", "text_column": "text",
              "options": "{}"},
        files={"upload": SimpleUploadedFile(filename, content)},
    )  # fmt: skip
    assert form.is_valid(), form.errors
    corpus = corpus_register(name="upper", kind="domain", source="upload", upload=SimpleUploadedFile(filename, content))
    assert _listing(artifacts) == [corpus.upload.name]
    assert list(corpus_texts(corpus=corpus)) == texts  # what a job reads


def test_upper_case_suffix_of_a_bad_file_is_still_checked(artifacts):
    with pytest.raises(RegistryError, match=r"line 2 is not JSON"):
        corpus_register(
            name="bad", kind="domain", source="upload", upload=SimpleUploadedFile("b.JSONL", b'{"text": "a"}\n{\n')
        )
    assert _listing(artifacts) == []
