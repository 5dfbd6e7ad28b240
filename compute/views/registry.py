"""Admin-only pages for corpora and SAEs, and the forms that launch training and evaluation jobs."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from compute.forms import EvaluationForm, TrainingForm
from compute.jobs import JobInputError
from compute.models import SAE, Corpus, LanguageModel, Study
from compute.services.evaluation import evaluation_start
from compute.services.registry import DEFAULT_MODEL_NAME
from compute.services.training import training_start
from config.roles import admin_required


@admin_required
def corpus_list(request: HttpRequest) -> HttpResponse:
    corpora = Corpus.objects.all()
    model_name = _counting_model_name()
    rows = [(corpus, corpus.token_counts.get(model_name)) for corpus in corpora]
    return render(request, "compute/corpus_list.html", {"rows": rows, "model_name": model_name})


@admin_required
def corpus_detail(request: HttpRequest, corpus_id: int) -> HttpResponse:
    corpus = get_object_or_404(Corpus, pk=corpus_id)
    context = {
        "corpus": corpus,
        "counts": sorted(corpus.token_counts.items()),
        "saes": corpus.saes.select_related("language_model")[:200],
    }
    return render(request, "compute/corpus_detail.html", context)


@admin_required
def sae_list(request: HttpRequest) -> HttpResponse:
    saes = SAE.objects.select_related("language_model", "train_corpus", "gsae")[:500]
    return render(request, "compute/sae_list.html", {"saes": saes})


@admin_required
def sae_detail(request: HttpRequest, sae_id: int) -> HttpResponse:
    sae = get_object_or_404(SAE.objects.select_related("language_model", "train_corpus", "gsae", "job"), pk=sae_id)
    form = EvaluationForm(initial={"corpus": sae.train_corpus_id})
    return render(request, "compute/sae_detail.html", _sae_context(sae, form))


@admin_required
def sae_evaluate(request: HttpRequest, sae_id: int) -> HttpResponse:
    sae = get_object_or_404(SAE, pk=sae_id)
    if request.method != "POST":
        return redirect("compute:sae-detail", sae_id=sae.pk)
    form = EvaluationForm(request.POST)
    if form.is_valid():
        try:
            job = evaluation_start(params=form.params(sae), created_by=request.user)
        except JobInputError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("compute:job-detail", job_id=job.pk)
    return render(request, "compute/sae_detail.html", _sae_context(sae, form), status=400)


@admin_required
def training_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = TrainingForm(request.POST)
        if form.is_valid():
            try:
                job = training_start(params=form.params(), created_by=request.user)
            except JobInputError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("compute:job-detail", job_id=job.pk)
        return render(request, "compute/training_form.html", {"form": form}, status=400)
    initial = {
        "language_model": LanguageModel.objects.filter(name=DEFAULT_MODEL_NAME).first(),
        "general_corpus": Corpus.objects.filter(kind=Corpus.Kind.GENERAL).first(),
        "domain_corpus": Corpus.objects.filter(kind=Corpus.Kind.DOMAIN).first(),
        "gsae": SAE.objects.filter(method=SAE.Method.GSAE, status=SAE.Status.READY).first(),
    }
    return render(request, "compute/training_form.html", {"form": TrainingForm(initial=initial)})


def _sae_context(sae: SAE, form: EvaluationForm) -> dict:
    train, evaluation = sae.stats.get("train") or {}, sae.stats.get("eval") or {}
    return {
        "sae": sae,
        "train_stats": sorted(train.items()),
        "eval_stats": sorted(evaluation.items()),
        "other_stats": sorted((k, v) for k, v in sae.stats.items() if k not in ("train", "eval", "curve")),
        "hyperparams": sorted(sae.hyperparams.items()),
        "evaluations": sae.evaluations.select_related("corpus", "general_corpus")[:50],
        # studies that hold this SAE (as a domain SAE or as their GSAE), with how often each was evaluated
        "studies": Study.objects.filter(Q(saes=sae) | Q(gsae=sae))
        .distinct()
        .annotate(n_evaluations=Count("evaluations", distinct=True))
        .order_by("name"),
        "derived": sae.derived.all()[:200],
        "form": form,
        **_training_figures(sae),
    }


def _training_figures(sae: SAE) -> dict:
    """The recorded training curve with a convergence verdict and the health flags, and the sweep's L0 against FVU."""
    from compute.ml.measures import convergence
    from compute.services.training_figures import sweep_figure, training_curve_figure
    from config.figures import svg_text

    out: dict = {"health": sae.health()}
    curve = sae.stats.get("curve")
    if curve:
        out["convergence"] = convergence(curve)
        title = f"Training of {sae.name} on {sae.train_corpus.name if sae.train_corpus else '?'}"
        out["curve_svg"] = svg_text(training_curve_figure({sae.name: curve}, title=title))
    if sae.job_id and sae.method != SAE.Method.GSAE:
        sweep = [
            (s.hyperparams.get("sparsity") or s.name, s.stats["eval"]["l0"], s.stats["eval"]["fvu"])
            for s in SAE.objects.filter(job_id=sae.job_id, method=sae.method, status=SAE.Status.READY)
            if (s.stats.get("eval") or {}).get("fvu") is not None
        ]
        if len(sweep) > 1:
            corpus = (sae.stats.get("eval") or {}).get("corpus", "?")
            suffix = " (GSAE + SSAE)" if sae.method == SAE.Method.SSAE else ""
            out["sweep_svg"] = svg_text(sweep_figure(sweep, corpus=f"{corpus}{suffix}"))
    return out


def _counting_model_name() -> str:
    if LanguageModel.objects.filter(name=DEFAULT_MODEL_NAME).exists():
        return DEFAULT_MODEL_NAME
    first = LanguageModel.objects.first()
    return first.name if first else DEFAULT_MODEL_NAME
