"""Synthetic worlds as a registered model and two corpora (see `compute.ml.synthetic`).

A world's files (sae-lens's SyntheticModel files, its options and which true features are domain features) live
in artifact storage under `worlds/<name>/`; its model record has source "synthetic" and that folder as location,
and its corpora (`<name>-general`, `<name>-domain`) have source "synthetic" and the model's name as location.
The true features are the answer key: only compute code (admins' pages and exports) reads them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.core.files import File
from django.db import transaction
from django.utils.text import slugify

from compute.ml.config import SyntheticWorldConfig
from compute.models import Corpus, LanguageModel
from config.storage import artifact_storage

WORLD_FILES = (
    "synthetic_model_config.json",  # sae_lens.synthetic.SYNTHETIC_MODEL_CONFIG_FILENAME
    "synthetic_model.safetensors",  # sae_lens.synthetic.SYNTHETIC_MODEL_WEIGHTS_FILENAME
    "world.json",  # compute.ml.synthetic.WORLD_FILE
    "world_probabilities.safetensors",  # compute.ml.synthetic.PROBABILITIES_FILE
)


def world_register(*, name: str, config: SyntheticWorldConfig) -> tuple[LanguageModel, list[Corpus]]:
    """Build a world from its options, store its files and register it as a model with a general and a domain
    corpus (re-registering a name replaces that world)."""
    from compute.ml.synthetic import HOOK_NAME, build_world

    from .registry import RegistryError

    slug = slugify(name)
    if not slug:
        raise RegistryError("Give the world a name (letters, digits, '-' or '_').")
    other = LanguageModel.objects.filter(name=slug).exclude(source=LanguageModel.Source.SYNTHETIC).first()
    if other is not None:
        raise RegistryError(f"A model named {slug!r} is already registered and is not a synthetic world: pick another.")
    world = build_world(config)
    folder = f"worlds/{slug}"
    storage = artifact_storage()
    with tempfile.TemporaryDirectory() as tmp:
        world.save(tmp)
        for file_name in WORLD_FILES:
            key = f"{folder}/{file_name}"
            if storage.exists(key):
                storage.delete(key)
            with open(Path(tmp) / file_name, "rb") as handle:
                storage.save(key, File(handle, name=file_name))
    info = {
        "synthetic": True,
        "d_model": config.hidden_dim,
        "n_layers": 1,
        "true_features": config.num_features,
        "domain_features": config.domain_features,
        "options": config.to_params(),
    }
    with transaction.atomic():
        model, _ = LanguageModel.objects.update_or_create(
            name=slug,
            defaults={
                "source": LanguageModel.Source.SYNTHETIC,
                "location": folder,
                "gguf_file": "",
                "default_hook": HOOK_NAME,
                "info": info,
            },
        )
        corpora = []
        for stream, kind, size in (
            ("general", Corpus.Kind.GENERAL, config.general_documents),
            ("domain", Corpus.Kind.DOMAIN, config.domain_documents),
        ):
            corpus, _ = Corpus.objects.update_or_create(
                name=f"{slug}-{stream}"[:100],
                defaults={
                    "kind": kind,
                    "source": Corpus.Source.SYNTHETIC,
                    "location": slug,
                    "split": "train",
                    "text_column": "",
                    "options": {"stream": stream},
                    "description": f"Synthetic world {slug}: {size:,} {stream} documents of "
                    f"{config.document_tokens} samples",
                    "token_counts": {},
                },
            )
            corpora.append(corpus)
    return model, corpora


def world_local_folder(*, language_model: LanguageModel, scratch: Path | None = None) -> Path:
    """A local folder holding the world's files (copied from artifact storage when it is remote)."""
    from .registry import RegistryError

    storage = artifact_storage()
    if not storage.exists(f"{language_model.location}/world.json"):
        raise RegistryError(
            f"The files of synthetic world {language_model.name!r} are missing from artifact storage: register it "
            "again with `python manage.py world add`."
        )
    try:
        return Path(storage.path(language_model.location))
    except NotImplementedError:
        target = Path(scratch or tempfile.mkdtemp()) / f"world-{language_model.pk}"
        target.mkdir(parents=True, exist_ok=True)
        for file_name in WORLD_FILES:
            with storage.open(f"{language_model.location}/{file_name}", "rb") as src, open(target / file_name, "wb") as dst:  # fmt: skip
                shutil.copyfileobj(src, dst)
        return target


def world_of_corpus(corpus: Corpus) -> LanguageModel:
    from .registry import RegistryError

    model = LanguageModel.objects.filter(name=corpus.location, source=LanguageModel.Source.SYNTHETIC).first()
    if model is None:
        raise RegistryError(
            f"Corpus {corpus.name!r} names synthetic world {corpus.location!r}, which is not registered."
        )
    return model


def world_load(*, language_model: LanguageModel, scratch: Path | None = None) -> Any:
    """The world (compute.ml.synthetic.SyntheticWorld) of a synthetic model record."""
    from compute.ml.synthetic import load_world

    return load_world(world_local_folder(language_model=language_model, scratch=scratch))


def world_documents(*, corpus: Corpus, scratch: Path | None = None, max_documents: int | None = None):
    """A synthetic corpus's documents (sample ranges of its stream), streamed."""
    world = world_load(language_model=world_of_corpus(corpus), scratch=scratch)
    return world.documents(corpus.options.get("stream", "general"), documents=max_documents)
