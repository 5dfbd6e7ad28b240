"""The train_saes job end to end on a tiny random model saved to disk, with real DB, storage and sae-lens files."""

from __future__ import annotations

import pytest
import torch

from compute.jobs import JobContext, JobInputError, job_cancel, job_claim, job_create, job_run
from compute.models import SAE, Corpus, Job, JobKind, JobStatus, LanguageModel
from compute.services import registry
from compute.services.training import run_training_job, training_plan, training_start
from tests.factories import tiny_model_folder

SCIENCE = (
    "The radio emission of the moon and planets is a new source of information about their atmospheres. "
    "Thermal conductivity of the surface layer was derived from the variation in infrared emission. "
)
WEB = "The film was long but the print I viewed was poor. The committee met on Monday to discuss the draft. "


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("tiny-model"), seed=11)


@pytest.fixture
def setup(db, tiny_model_dir, tmp_path, artifacts):
    (tmp_path / "science.txt").write_text("\n\n".join([SCIENCE * 2] * 60), encoding="utf-8")
    (tmp_path / "web.txt").write_text("\n\n".join([WEB * 2] * 60), encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n\n  \n", encoding="utf-8")
    model = registry.language_model_register(name="tiny", source="local", location=str(tiny_model_dir))
    web = registry.corpus_register(name="web", kind="general", source="files", location=str(tmp_path / "web.txt"))
    science = registry.corpus_register(
        name="science", kind="domain", source="files", location=str(tmp_path / "science.txt")
    )
    empty = registry.corpus_register(name="empty", kind="domain", source="files", location=str(tmp_path / "empty.txt"))
    return {"model": model, "web": web, "science": science, "empty": empty, "tmp": tmp_path}


def base_params(setup, **extra):
    return {
        "language_model_id": setup["model"].pk,
        "hook_name": "blocks.0.hook_resid_post",
        "general_corpus_id": setup["web"].pk,
        "domain_corpus_id": setup["science"].pk,
        "methods": ["gsae", "finetune", "direct", "ssae"],
        "gsae_expansion": 4,
        "domain_expansion": 2,
        "l1_coefficients": [0.3, 3.0],
        "gsae_l1_coefficient": 0.3,
        "lr": 1e-2,
        "gsae_tokens": 6000,
        "domain_tokens": 4000,
        "eval_tokens": 1024,
        "context_size": 32,
        "batch_size": 16,
        "minibatch_tokens": 256,
        **extra,
    }


def run(params) -> Job:
    job = job_create(kind=JobKind.TRAIN_SAES, params=params, enqueue=False)
    job_run(job_id=job.pk, attempt=job.attempt)
    job.refresh_from_db()
    return job


def test_training_job_registers_ready_saes_that_reload_with_sae_lens(setup):
    from sae_lens import SAE as LensSAE

    job = run(base_params(setup))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.device == "cpu"
    saes = {s.hyperparams["run_key"]: s for s in SAE.objects.filter(job=job)}
    assert set(saes) == {
        "gsae-standard-l1=0.3",
        "finetune-standard-l1=0.3",
        "finetune-standard-l1=3",
        "direct-standard-l1=0.3",
        "direct-standard-l1=3",
        "ssae-standard-l1=0.3",
        "ssae-standard-l1=3",
    }
    gsae = saes["gsae-standard-l1=0.3"]
    assert all(s.status == SAE.Status.READY and s.is_usable for s in saes.values())
    assert gsae.d_sae == 64 and saes["direct-standard-l1=3"].d_sae == 32 and saes["finetune-standard-l1=3"].d_sae == 64
    assert all(s.gsae_id == gsae.pk for k, s in saes.items() if not k.startswith("gsae"))
    assert saes["ssae-standard-l1=3"].train_corpus == setup["science"]
    stats = saes["direct-standard-l1=0.3"].stats
    assert stats["train"]["tokens"] == 4000 and stats["eval"]["tokens"] > 0
    assert stats["train"]["fvu"] < stats["train"]["fvu_initial"]
    # The outlier rule is recorded with what it left out; the eval split's share is the same for every SAE.
    assert stats["outliers"]["outlier_norm_factor"] == 10.0 and stats["outliers"]["excluded_share"] < 0.05
    assert stats["eval"]["outlier_norm_factor"] == 10.0
    assert stats["eval"]["explained_variance"] == pytest.approx(1 - stats["eval"]["fvu"])
    shares = {s.stats["eval"]["excluded_share"] for k, s in saes.items() if not k.startswith("gsae")}
    assert len(shares) == 1
    assert saes["ssae-standard-l1=0.3"].stats["eval"]["includes_gsae"] is True
    # Every artifact is an sae-lens folder in artifact storage.
    from config.storage import artifact_storage

    storage = artifact_storage()
    for sae in saes.values():
        folder = storage.path(sae.artifact_path)
        lens = LensSAE.load_from_disk(folder)
        assert (lens.cfg.d_in, lens.cfg.d_sae) == (16, sae.d_sae)
        assert lens.cfg.metadata.hook_name == "blocks.0.hook_resid_post"
        x = torch.randn(5, 16)
        assert lens(x).shape == (5, 16)
        # Self-describing, as sae-lens's runners write it.
        assert lens.cfg.metadata.method == sae.method and lens.cfg.metadata.context_size == 32
        assert lens.cfg.metadata.dataset_path == sae.train_corpus.location
        assert storage.exists(f"{sae.artifact_path}/sparsity.safetensors")
    ssae = saes["ssae-standard-l1=0.3"]
    ssae_cfg = LensSAE.load_from_disk(storage.path(ssae.artifact_path)).cfg.metadata
    assert ssae_cfg.gsae_name == gsae.name
    from compute.ml.saes import GSAEPlusSSAE, weights_sha256

    assert ssae_cfg.gsae_weights_sha256 == weights_sha256(LensSAE.load_from_disk(storage.path(gsae.artifact_path)))
    from compute.services.registry import sae_load_composite

    assert isinstance(sae_load_composite(sae=ssae, device="cpu", scratch=setup["tmp"]), GSAEPlusSSAE)
    assert job.result["saes"] and len(job.result["saes"]) == 7
    # A first run on a corpus counts its tokens for the corpus page.
    setup["science"].refresh_from_db()
    counts = setup["science"].token_counts["tiny"]
    text = (setup["tmp"] / "science.txt").read_text(encoding="utf-8")
    assert counts["documents"] == 60 and counts["tokens"] == len(text.replace("\n\n", "").encode()) + 60
    assert job.stats["tokens_total"] == 10_000
    assert job.stats["tokens_done"] == 10_000


def test_domain_run_on_an_existing_gsae(setup):
    first = run(base_params(setup, methods=["gsae"], name_prefix="base"))
    assert first.status == JobStatus.SUCCEEDED, first.error
    gsae = SAE.objects.get(job=first)
    job = run(base_params(setup, methods=["ssae"], gsae_id=gsae.pk, general_corpus_id=None, l1_coefficients=[1.0]))
    assert job.status == JobStatus.SUCCEEDED, job.error
    (ssae,) = SAE.objects.filter(job=job)
    assert ssae.gsae == gsae and ssae.method == "ssae" and ssae.status == SAE.Status.READY


@pytest.mark.parametrize(
    "change, message",
    [
        ({"methods": ["ssae"], "general_corpus_id": None}, "need a GSAE"),
        ({"methods": ["finetune", "direct"], "general_corpus_id": None}, "need a GSAE"),
        ({"domain_corpus_id": None}, "need a domain corpus"),
        ({"hook_name": "blocks.0.hook resid"}, "not a hook name"),
        ({"architecture": "gated"}, "architecture must be"),
        ({"l1_coefficients": []}, "l1_coefficients must be a list"),
        ({"gsae_tokens": 0}, "gsae_tokens must be a whole number"),
        ({"language_model_id": 999999}, "does not exist"),
    ],
)
def test_bad_input_is_refused_before_queuing(setup, change, message):
    with pytest.raises(JobInputError, match=message):
        training_start(params=base_params(setup, **change))
    assert not Job.objects.exists()


def test_missing_and_empty_corpora_are_refused(setup):
    setup["science"].location = str(setup["tmp"] / "gone.txt")
    setup["science"].save()
    with pytest.raises(JobInputError, match="does not exist"):
        training_plan(base_params(setup))
    with pytest.raises(JobInputError, match="empty"):
        training_plan(base_params(setup, domain_corpus_id=setup["empty"].pk))


def test_failures_found_after_loading_the_model_leave_no_usable_sae(setup):
    job = run(base_params(setup, hook_name="blocks.7.hook_resid_post"))
    assert job.status == JobStatus.FAILED
    assert "has no hook 'blocks.7.hook_resid_post'" in job.error
    assert not SAE.objects.exists()

    wrong = registry.sae_register_pretrained(
        name="wide",
        release="gpt2-small-res-jb",
        sae_id="blocks.0.hook_resid_pre",
        language_model=setup["model"],
        hook_name="blocks.0.hook_resid_post",
        d_in=768,
        d_sae=24576,
    )
    job = run(base_params(setup, methods=["ssae"], gsae_id=wrong.pk))
    assert job.status == JobStatus.FAILED and "width 768" in job.error

    offline = registry.language_model_register(name="nowhere", source="hub", location="no-such-org/no-such-model-xyz")
    job = run(base_params(setup, language_model_id=offline.pk, methods=["gsae"], hook_name=""))
    assert job.status == JobStatus.FAILED
    assert "no-such-org/no-such-model-xyz" in job.error


class CancelAfter(JobContext):
    """An admin presses Cancel after the job has reported `calls` times."""

    calls = 3

    def progress(self, fraction, message="", **stats):
        self.calls -= 1
        if self.calls == 0:
            job_cancel(job_id=self.job.pk)
        return super().progress(fraction, message, **stats)


def test_cancelled_run_marks_its_saes_failed(setup):
    from compute.jobs import JobCancelled

    job = job_create(kind=JobKind.TRAIN_SAES, params=base_params(setup, methods=["gsae"]), enqueue=False)
    claimed = job_claim(job_id=job.pk, attempt=job.attempt)
    with pytest.raises(JobCancelled):
        run_training_job(CancelAfter(claimed))
    assert SAE.objects.filter(job=job).count() == 1
    assert set(SAE.objects.values_list("status", flat=True)) == {SAE.Status.FAILED}
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_register_defaults_is_idempotent(db):
    model, corpora = registry.register_defaults()
    again, corpora_again = registry.register_defaults()
    assert model == again and [c.pk for c in corpora] == [c.pk for c in corpora_again]
    assert model.gguf_file.endswith(".gguf") and model.default_hook == "blocks.15.hook_resid_post"
    assert {c.name: c.kind for c in Corpus.objects.all()} == {"web": "general", "science": "domain"}
    assert LanguageModel.objects.count() == 1
