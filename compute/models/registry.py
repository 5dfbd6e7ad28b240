"""What the science works on: language models, corpora and SAEs."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import Storage, storages
from django.db import models
from django.utils.deconstruct import deconstructible


@deconstructible
class ArtifactStorage(Storage):
    """The "artifacts" storage looked up on every call, so the backend configured now is the one used."""

    def _backend(self) -> Storage:
        return storages["artifacts"]

    def _open(self, name: str, mode: str = "rb") -> Any:
        return self._backend().open(name, mode)

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        return self._backend().save(name, content, max_length=max_length)

    def generate_filename(self, filename: str) -> str:
        return self._backend().generate_filename(filename)

    def delete(self, name: str) -> None:
        self._backend().delete(name)

    def exists(self, name: str) -> bool:
        return self._backend().exists(name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        return self._backend().listdir(path)

    def size(self, name: str) -> int:
        return self._backend().size(name)

    def url(self, name: str) -> str:
        return self._backend().url(name)

    def path(self, name: str) -> str:
        return self._backend().path(name)


class LanguageModel(models.Model):
    class Source(models.TextChoices):
        HUB = "hub", "Hugging Face name"
        LOCAL = "local", "Local path"
        PACKAGE = "package", "Python package (offline)"
        SYNTHETIC = "synthetic", "Synthetic world (sae-lens synthetic data)"

    name = models.SlugField(max_length=100, unique=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    location = models.CharField(max_length=500, help_text="Hub name, local path, or package name.")
    gguf_file = models.CharField(max_length=200, blank=True)
    default_hook = models.CharField(max_length=100, blank=True)
    info = models.JSONField(default=dict, blank=True, help_text="d_model, n_layers, vocab size, ...")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Corpus(models.Model):
    class Kind(models.TextChoices):
        GENERAL = "general", "General (web text)"
        DOMAIN = "domain", "Domain"

    class Source(models.TextChoices):
        HUB = "hub", "Hugging Face dataset"
        FILES = "files", "Local files"
        UPLOAD = "upload", "Uploaded file"
        DEMO = "demo", "Offline demo corpus"
        SYNTHETIC = "synthetic", "Synthetic world's samples"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    location = models.CharField(max_length=500, help_text="Dataset name, file path/glob, or demo corpus name.")
    split = models.CharField(max_length=50, blank=True, default="train")
    text_column = models.CharField(max_length=100, blank=True, default="text")
    upload = models.FileField(upload_to="corpora/", storage=ArtifactStorage(), blank=True)
    options = models.JSONField(default=dict, blank=True)
    description = models.CharField(max_length=300, blank=True)
    token_counts = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per language model name: documents, tokens, train/eval windows and tokens, context size.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "corpora"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        # The stored file's name is final only after saving (storage may rename it): point location at it.
        if self.source == self.Source.UPLOAD and self.upload and self.location != self.upload.name:
            self.location = self.upload.name
            Corpus.objects.filter(pk=self.pk).update(location=self.location)


class SAE(models.Model):
    class Method(models.TextChoices):
        GSAE = "gsae", "General SAE"
        FINETUNE = "finetune", "GSAE fine-tuned on D"
        DIRECT = "direct", "Direct SAE"
        SSAE = "ssae", "Specialized SAE"

    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200, unique=True)
    method = models.CharField(max_length=10, choices=Method.choices)
    architecture = models.CharField(max_length=20, default="standard")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.TRAINING, db_index=True)
    language_model = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="saes")
    hook_name = models.CharField(max_length=100)
    d_in = models.PositiveIntegerField()
    d_sae = models.PositiveIntegerField()
    gsae = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="derived",
        help_text="The GSAE a fine-tune starts from, or whose residual an SSAE reconstructs.",
    )
    train_corpus = models.ForeignKey(Corpus, null=True, blank=True, on_delete=models.PROTECT, related_name="saes")
    hyperparams = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True, help_text="Training statistics.")
    artifact_path = models.CharField(max_length=500, blank=True, help_text="Folder in artifact storage.")
    pretrained_release = models.CharField(max_length=200, blank=True)
    pretrained_id = models.CharField(max_length=200, blank=True)
    job = models.ForeignKey("compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="saes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "SAE"

    def __str__(self) -> str:
        return self.name

    @property
    def is_usable(self) -> bool:
        """Weights exist (saved artifact or a pretrained release) and training finished."""
        return self.status == self.Status.READY and bool(self.artifact_path or self.pretrained_release)

    @property
    def expansion(self) -> float:
        return self.d_sae / self.d_in if self.d_in else 0.0

    def health(self, *, eval_fvu: float | None = None) -> dict:
        """Training health flags (`compute.ml.measures.training_health`) from the recorded curve, the final
        training statistics and the FVU on its eval split (or `eval_fvu`, measured elsewhere)."""
        from compute.ml.measures import training_health

        stats = self.stats or {}
        if eval_fvu is None:
            eval_fvu = (stats.get("eval") or {}).get("fvu")
        return training_health(stats.get("curve") or [], d_sae=self.d_sae, final=stats.get("train"), eval_fvu=eval_fvu)


class Evaluation(models.Model):
    """One evaluation of an SAE (alone, or added to its GSAE for an SSAE) on one corpus."""

    sae = models.ForeignKey(SAE, on_delete=models.CASCADE, related_name="evaluations")
    corpus = models.ForeignKey(Corpus, on_delete=models.PROTECT, related_name="evaluations")
    general_corpus = models.ForeignKey(
        Corpus, null=True, blank=True, on_delete=models.PROTECT, related_name="frequency_evaluations"
    )
    results = models.JSONField(
        default=dict, blank=True, help_text="Reconstruction, loss recovered, feature frequencies, novelty."
    )
    job = models.ForeignKey("compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="evaluations")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.sae} on {self.corpus}"
