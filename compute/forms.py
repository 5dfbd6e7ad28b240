"""Forms of the compute pages: launching training and evaluation, and corpus upload in the admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms

from compute.ml.choices import CORPUS_SUFFIXES, corpus_file_suffix
from compute.ml.config import (
    ConfigError,
    DashboardJobConfig,
    EvaluationConfig,
    JobConfig,
    Option,
    TrainingConfig,
    options_of,
)
from compute.models import SAE, Corpus, LanguageModel


def _numbers(text: str, kind: type, label: str) -> list:
    try:
        values = [kind(part) for part in text.replace(",", " ").split()]
    except ValueError as exc:
        raise forms.ValidationError(f"{label}: give numbers separated by commas.") from exc
    if not values:
        raise forms.ValidationError(f"{label}: give at least one value.")
    return values


def option_field(opt: Option) -> forms.Field:
    """The form field of one config option: its default as initial value, its bounds and help; blank = default."""
    common = {"label": opt.title, "help_text": opt.help, "required": False}
    if opt.choices:
        labels = opt.choice_labels or {}
        choices = [(c, labels.get(c, c)) for c in opt.choices]
        if opt.many:  # a set of names: at least one
            common["required"] = True
            return forms.MultipleChoiceField(
                choices=choices, widget=forms.CheckboxSelectMultiple, initial=list(opt.default), **common
            )
        return forms.ChoiceField(choices=choices, initial=opt.default, **common)
    if opt.many:  # numbers separated by commas
        return forms.CharField(initial=", ".join(f"{v:g}" for v in opt.default), **common)
    if opt.type is int:
        return forms.IntegerField(min_value=opt.low, max_value=opt.high, initial=opt.default, **common)
    if opt.type is float:
        return forms.FloatField(max_value=opt.high, initial=opt.default, **common)
    return forms.CharField(initial=opt.default, max_length=200, **common)


class ConfigForm(forms.Form):
    """A form whose option fields are derived from a job config class (compute.ml.config).

    Subclasses declare their record choosers as usual and name `config_class`; `clean()` builds the
    typed config, so the form refuses exactly what the job would refuse, with the same messages.
    """

    config_class: type[JobConfig]
    config_exclude: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = {o.name: o for o in options_of(self.config_class) if o.name not in self.config_exclude}
        for opt in self.options.values():
            self.fields[opt.name] = option_field(opt)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        raw: dict[str, Any] = {}
        for name, opt in self.options.items():
            value = data.get(name)
            if value in (None, "", []):
                continue
            if opt.many and not opt.choices:
                try:
                    value = _numbers(value, opt.type, opt.title)
                except forms.ValidationError as exc:
                    self.add_error(name, exc)
                    continue
            raw[name] = value
        if self.errors:
            return data
        try:
            self.config = self.config_class.from_params(raw)
        except ConfigError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        return data

    def config_params(self) -> dict[str, Any]:
        return self.config.to_params()


class TrainingForm(ConfigForm):
    config_class = TrainingConfig
    language_model = forms.ModelChoiceField(queryset=LanguageModel.objects.all())
    general_corpus = forms.ModelChoiceField(queryset=Corpus.objects.all(), required=False)
    domain_corpus = forms.ModelChoiceField(queryset=Corpus.objects.all(), required=False)
    gsae = forms.ModelChoiceField(
        queryset=SAE.objects.filter(method=SAE.Method.GSAE, status=SAE.Status.READY),
        required=False,
        label="Existing GSAE",
        help_text="For GSAE-finetune and SSAE, unless this run trains a GSAE first.",
    )

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        ids = {
            "language_model_id": data["language_model"].pk,
            "general_corpus_id": data["general_corpus"].pk if data.get("general_corpus") else None,
            "domain_corpus_id": data["domain_corpus"].pk if data.get("domain_corpus") else None,
            "gsae_id": data["gsae"].pk if data.get("gsae") else None,
        }
        return {**ids, **self.config_params()}


class EvaluationForm(ConfigForm):
    config_class = EvaluationConfig
    config_exclude = ("context_size", "batch_size", "frequency_tokens")
    corpus = forms.ModelChoiceField(queryset=Corpus.objects.all(), help_text="Reconstruction and loss recovered.")
    general_corpus = forms.ModelChoiceField(
        queryset=Corpus.objects.filter(kind=Corpus.Kind.GENERAL), required=False, help_text="Feature frequencies."
    )

    def params(self, sae: SAE) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "sae_id": sae.pk,
            "corpus_id": data["corpus"].pk,
            "general_corpus_id": data["general_corpus"].pk if data.get("general_corpus") else None,
            **{k: v for k, v in self.config_params().items() if k in self.options},
        }


class DashboardBuildForm(ConfigForm):
    """The corpora to build an SAE's dashboards on, and the build's settings (DashboardJobConfig)."""

    config_class = DashboardJobConfig
    corpora = forms.ModelMultipleChoiceField(
        queryset=Corpus.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text="One build job per corpus; corpora with finished or queued dashboards are not listed.",
    )

    def __init__(self, *args: Any, corpora: list[Corpus], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["corpora"].queryset = Corpus.objects.filter(pk__in=[c.pk for c in corpora]).order_by("name")
        # The corpora first: what is built, then how.
        self.order_fields(["corpora"])


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
            elif corpus_file_suffix(upload.name) not in CORPUS_SUFFIXES:
                self.add_error("upload", f"Corpus files must be {', '.join(CORPUS_SUFFIXES)}.")
            elif "upload" in self.changed_data:
                from compute.services.registry import RegistryError, corpus_upload_check

                try:  # the whole file, now: a bad one is refused here and nothing is stored
                    corpus_upload_check(upload=upload, text_column=data.get("text_column") or "text")
                except RegistryError as exc:
                    self.add_error("upload", str(exc))
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
