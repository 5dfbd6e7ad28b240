"""`manage.py corpus add`: a local corpus registered from the shell, a missing file refused before anything is
recorded, and the study command's export refuses a study without a current evaluation."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from compute.models import Corpus
from compute.services import registry


def test_corpus_add_registers_local_files_and_refuses_missing_ones(db, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.jsonl").write_text(json.dumps({"body": "Dr. Smith saw the patient."}) + "\n", encoding="utf-8")
    out = io.StringIO()
    call_command("corpus", "add", "clinic notes", "--kind", "domain", "--files", str(notes / "*.jsonl"),
                 "--text-column", "body", stdout=out)  # fmt: skip
    corpus = Corpus.objects.get(name="clinic-notes")
    assert (corpus.kind, corpus.source, corpus.text_column) == ("domain", "files", "body")
    assert list(registry.corpus_texts(corpus=corpus)) == ["Dr. Smith saw the patient."]
    assert "clinic-notes" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("corpus", "add", "ghost", "--kind", "general", "--files", str(tmp_path / "nowhere.txt"))
    assert not Corpus.objects.filter(name="ghost").exists()
    listing = io.StringIO()
    call_command("corpus", "list", stdout=listing)
    assert listing.getvalue().startswith("clinic-notes\tdomain\tfiles")
