"""Forms of the compute pages: launching training and evaluation, and corpus upload in the admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms

from compute.models import SAE, Corpus, LanguageModel

UPLOAD_SUFFIXES = (".txt", ".jsonl", ".parquet", ".csv")


def _numbers(text: str, kind: type, label: str) -> list:
    try:
        values = [kind(part) for part in text.replace(",", " ").split()]
    except ValueError as exc:
        raise forms.ValidationError(f"{label}: give numbers separated by commas.") from exc
    if not values:
        raise forms.ValidationError(f"{label}: give at least one value.")
    return values


class TrainingForm(forms.Form):
    language_model = forms.ModelChoiceField(queryset=LanguageModel.objects.all())
    methods = forms.MultipleChoiceField(
        choices=[
            ("gsae", "GSAE (on the general corpus)"),
            ("finetune", "GSAE-finetune"),
            ("direct", "Direct SAE"),
            ("ssae", "Specialized SAE (SSAE)"),
        ],
        widget=forms.CheckboxSelectMultiple,
        initial=["finetune", "direct", "ssae"],
    )
    general_corpus = forms.ModelChoiceField(queryset=Corpus.objects.all(), required=False)
    domain_corpus = forms.ModelChoiceField(queryset=Corpus.objects.all(), required=False)
    gsae = forms.ModelChoiceField(
        queryset=SAE.objects.filter(method=SAE.Method.GSAE, status=SAE.Status.READY),
        required=False,
        label="Existing GSAE",
        help_text="For GSAE-finetune and SSAE, unless this run trains a GSAE first.",
    )
    architecture = forms.ChoiceField(choices=[("standard", "Standard (L1)"), ("topk", "TopK")])
    hook_name = forms.CharField(required=False, help_text="Blank: the model's mid-depth blocks.N.hook_resid_post.")
    l1_coefficients = forms.CharField(initial="0.3, 1, 3", label="L1 coefficients (standard sweep)")
    ks = forms.CharField(initial="8, 16, 32", label="k values (TopK sweep)")
    gsae_expansion = forms.IntegerField(min_value=1, initial=16)
    domain_expansion = forms.IntegerField(min_value=1, initial=2)
    gsae_tokens = forms.IntegerField(min_value=1, initial=100_000)
    domain_tokens = forms.IntegerField(min_value=1, initial=50_000)
    lr = forms.FloatField(min_value=1e-7, initial=3e-3, label="Learning rate")
    finetune_lr = forms.FloatField(min_value=1e-7, initial=1e-4, label="Fine-tune learning rate")
    context_size = forms.IntegerField(min_value=2, max_value=8192, initial=128)
    name_prefix = forms.SlugField(required=False, max_length=60)

    def clean_l1_coefficients(self) -> list[float]:
        return _numbers(self.cleaned_data["l1_coefficients"], float, "L1 coefficients")

    def clean_ks(self) -> list[int]:
        return _numbers(self.cleaned_data["ks"], int, "k values")

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        ids = {
            "language_model_id": data["language_model"].pk,
            "general_corpus_id": data["general_corpus"].pk if data.get("general_corpus") else None,
            "domain_corpus_id": data["domain_corpus"].pk if data.get("domain_corpus") else None,
            "gsae_id": data["gsae"].pk if data.get("gsae") else None,
        }
        keys = (
            "methods", "architecture", "hook_name", "l1_coefficients", "ks", "gsae_expansion", "domain_expansion",
            "gsae_tokens", "domain_tokens", "lr", "finetune_lr", "context_size", "name_prefix",
        )  # fmt: skip
        return {**ids, **{key: data[key] for key in keys}}


class EvaluationForm(forms.Form):
    corpus = forms.ModelChoiceField(queryset=Corpus.objects.all(), help_text="Reconstruction and loss recovered.")
    general_corpus = forms.ModelChoiceField(
        queryset=Corpus.objects.filter(kind=Corpus.Kind.GENERAL), required=False, help_text="Feature frequencies."
    )
    eval_tokens = forms.IntegerField(min_value=128, initial=16_384)

    def params(self, sae: SAE) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "sae_id": sae.pk,
            "corpus_id": data["corpus"].pk,
            "general_corpus_id": data["general_corpus"].pk if data.get("general_corpus") else None,
            "eval_tokens": data["eval_tokens"],
        }


class CorpusAdminForm(forms.ModelForm):
    """An uploaded corpus needs a .txt/.jsonl/.parquet/.csv file; other sources need a location."""

    class Meta:
        model = Corpus
        fields = ["name", "kind", "source", "location", "split", "text_column", "upload", "description", "options"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["location"].required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        source, upload = data.get("source"), data.get("upload")
        if source == Corpus.Source.UPLOAD:
            if upload and not data.get("location"):
                # Filled in with the storage name on save; the model does not allow a blank location.
                data["location"] = Path(upload.name).name
                self.instance.location = data["location"]
            if not upload:
                self.add_error("upload", "Choose a file to upload (.txt, .jsonl, .parquet or .csv).")
            elif Path(upload.name).suffix.lower() not in UPLOAD_SUFFIXES:
                self.add_error("upload", f"Corpus files must be {', '.join(UPLOAD_SUFFIXES)}.")
        elif not (data.get("location") or "").strip():
            self.add_error("location", "Give the dataset name, file path or demo corpus name.")
        return data

    def save(self, commit: bool = True) -> Corpus:
        corpus = super().save(commit=False)
        if "upload" in self.changed_data:
            corpus.token_counts = {}  # new text: old counts no longer hold
        if commit:
            corpus.save()
        return corpus


class AutoInterpForm(forms.Form):
    """Explain and score features of one SAE on one corpus (random ones, or listed ones)."""

    sae = forms.ModelChoiceField(queryset=SAE.objects.filter(status=SAE.Status.READY).order_by("name"))
    corpus = forms.ModelChoiceField(queryset=Corpus.objects.order_by("name"))
    n_random = forms.IntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        initial=50,
        label="Random features",
        help_text="How many features to draw among those that fire on the corpus.",
    )
    feature_indices = forms.CharField(
        required=False, label="Or these features", help_text="Feature indices separated by spaces or commas."
    )
    seed = forms.IntegerField(min_value=0, initial=0)

    def clean_feature_indices(self) -> list[int] | None:
        text = self.cleaned_data["feature_indices"].strip()
        return _numbers(text, int, "Feature indices") if text else None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("feature_indices") and not data.get("n_random"):
            raise forms.ValidationError("Give a number of random features or a list of feature indices.")
        return data


class StudyForm(forms.Form):
    """A study by hand (a training run's page creates one in one click)."""

    name = forms.SlugField(max_length=100)
    gsae = forms.ModelChoiceField(queryset=SAE.objects.filter(method=SAE.Method.GSAE, status=SAE.Status.READY))
    domain_corpus = forms.ModelChoiceField(queryset=Corpus.objects.all(), label="Domain corpus D")
    general_corpus = forms.ModelChoiceField(queryset=Corpus.objects.all())
    saes = forms.ModelMultipleChoiceField(
        queryset=SAE.objects.exclude(method=SAE.Method.GSAE).filter(status=SAE.Status.READY),
        label="Domain SAEs",
        widget=forms.SelectMultiple(attrs={"size": 8}),
    )
    eval_tokens = forms.IntegerField(min_value=1, initial=16_384, help_text="Held-out tokens of D for the losses.")
    frequency_tokens = forms.IntegerField(
        min_value=1,
        initial=131_072,
        help_text="General-corpus tokens for firing frequencies: nothing rarer than 1 / this can be told from dead.",
    )

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "gsae": data["gsae"],
            "domain_corpus": data["domain_corpus"],
            "general_corpus": data["general_corpus"],
            "saes": list(data["saes"]),
            "options": {"eval_tokens": data["eval_tokens"], "frequency_tokens": data["frequency_tokens"]},
        }


class DecompositionProposeForm(forms.Form):
    """Sub-components from the LLM endpoint or the local model, or typed (text form: name, `+ phrase`, `- near miss`)."""

    description = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    source = forms.ChoiceField(
        choices=[("llm", "LLM endpoint"), ("local", "local instruct model"), ("manual", "typed below")], initial="llm"
    )
    n_components = forms.IntegerField(min_value=1, max_value=12, initial=5, label="sub-components")
    n_phrases = forms.IntegerField(min_value=3, max_value=10, initial=3, label="phrases each")
    components_text = forms.CharField(
        required=False,
        label="sub-components (typed)",
        widget=forms.Textarea(
            attrs={"rows": 10, "placeholder": "physics\n+ E = mc squared\n+ ...\n- physical therapy"}
        ),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("source") == "manual" and not (data.get("components_text") or "").strip():
            self.add_error("components_text", "Type the sub-components, or choose the LLM or the local model.")
        return data


class DecompositionEditForm(forms.Form):
    components_text = forms.CharField(label="sub-components", widget=forms.Textarea(attrs={"rows": 16}))


class ProbeForm(forms.Form):
    text = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
