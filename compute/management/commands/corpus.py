"""`python manage.py corpus add NAME --kind domain --files 'notes/*.jsonl'` (or `--hf DATASET`): register a
corpus from the shell, as the browser form does; `corpus list` shows what is registered."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compute.jobs import JobInputError
from compute.models import Corpus
from compute.services import registry


class Command(BaseCommand):
    help = "Register a corpus (local .txt/.jsonl/.parquet/.csv files or a Hugging Face dataset), or list them."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register (or update) a corpus by name")
        add.add_argument("name")
        add.add_argument("--kind", required=True, choices=Corpus.Kind.values, help="general (web text) or domain")
        source = add.add_mutually_exclusive_group(required=True)
        source.add_argument("--files", help="a file, folder or glob of .txt/.jsonl/.parquet/.csv files")
        source.add_argument("--hf", help="a Hugging Face dataset name (streamed)")
        add.add_argument("--split", default="train", help="dataset split (--hf)")
        add.add_argument("--text-column", default="text", help="column or JSON key holding the text")
        add.add_argument("--description", default="")
        sub.add_parser("list", help="the registered corpora")

    def handle(self, *args, action: str, **o) -> None:
        if action == "list":
            for corpus in Corpus.objects.all():
                self.stdout.write(f"{corpus.name}\t{corpus.kind}\t{corpus.source}\t{corpus.location}")
            return
        from compute.ml.corpora import CorpusError

        source = Corpus.Source.FILES if o["files"] else Corpus.Source.HUB
        try:
            if source == Corpus.Source.FILES:  # refuse before recording anything
                registry.corpus_check(
                    corpus=Corpus(name=o["name"], source=source, location=o["files"], text_column=o["text_column"])
                )
            corpus = registry.corpus_register(
                name=o["name"],
                kind=o["kind"],
                source=source,
                location=o["files"] or o["hf"],
                split=o["split"],
                text_column=o["text_column"],
                description=o["description"],
            )
        except (JobInputError, CorpusError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Registered corpus {corpus.name!r} ({corpus.kind}, {corpus.get_source_display()}).")
