"""`python manage.py count_tokens CORPUS [--model NAME]`: documents, tokens and train/eval windows."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compute.models import Corpus, LanguageModel
from compute.services import registry


class Command(BaseCommand):
    help = "Count a corpus's tokens with a model's tokenizer and store them on the corpus page."

    def add_arguments(self, parser) -> None:
        parser.add_argument("corpus")
        parser.add_argument("--model", default=registry.DEFAULT_MODEL_NAME)
        parser.add_argument("--context-size", type=int, default=128)

    def handle(self, *args, corpus: str, model: str, context_size: int, **options) -> None:
        from compute.ml.corpora import CorpusError
        from compute.ml.lm import ModelLoadError

        try:
            record = Corpus.objects.get(name=corpus)
            language_model = LanguageModel.objects.get(name=model)
        except (Corpus.DoesNotExist, LanguageModel.DoesNotExist) as exc:
            raise CommandError(f"{exc}: run register_defaults, or check the names.") from exc
        try:
            counts = registry.corpus_count_tokens(
                corpus=record, language_model=language_model, context_size=context_size
            )
        except (CorpusError, ModelLoadError, registry.RegistryError) as exc:
            raise CommandError(str(exc)) from exc
        for key, value in counts.items():
            self.stdout.write(f"{key}: {value:,}")
