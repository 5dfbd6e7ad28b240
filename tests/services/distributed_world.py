"""The driver of the distributed test: a web process of its own (own folder, own copy of the model), run as
`python -m tests.services.distributed_world` by `chaos_world.World`. It records and queues work through the
features' services, as the site's pages do, and renders pages with Django's test client. It writes nothing
locally that a worker reads: corpora are uploaded to artifact storage, the model is each machine's own copy."""

from __future__ import annotations

from typing import Any

from tests.services.chaos_world import _handle as chaos_handle
from tests.services.chaos_world import main

MODEL_FOLDER = "model"  # relative: each process finds its own copy in its working directory
HOOK = "blocks.0.hook_resid_post"
SCIENCE = "The radio emission of planet {i} varies with the thermal conductivity of its surface layer."
WEB = "The film on channel {i} was long, and the committee met on Monday to discuss the draft."


def _setup() -> dict[str, int]:
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from compute.services import registry

    users = get_user_model().objects
    admin = users.create_user("alice", "alice@example.org", "pw-alice-123", is_staff=True)
    labeller = users.create_user("bob", "bob@example.org", "pw-bob-1234")
    lm = registry.language_model_register(name="tiny", source="local", location=MODEL_FOLDER, default_hook=HOOK)
    corpora = {}
    for kind, name, line in (("domain", "science", SCIENCE), ("general", "web", WEB)):
        text = "\n\n".join(line.format(i=i) for i in range(600))
        upload = SimpleUploadedFile(f"{name}.txt", text.encode())
        corpora[name] = registry.corpus_register(name=name, kind=kind, source="upload", upload=upload).pk
    return {"admin": admin.pk, "labeller": labeller.pk, "language_model_id": lm.pk, **corpora}


def _saes(job_id: int) -> list[dict[str, Any]]:
    from compute.models import SAE

    return list(
        SAE.objects.filter(job_id=job_id).order_by("pk").values("id", "name", "method", "status", "artifact_path")
    )


def _study(training_job_id: int, options: dict[str, Any]) -> dict[str, int]:
    from compute.models import Job
    from compute.services.studies import study_create_from_job, study_evaluate_start

    study = study_create_from_job(job=Job.objects.get(pk=training_job_id), options=options)
    request = study_evaluate_start(study=study)
    return {"study_id": study.pk, "job_id": request.job.pk}


def _dashboards(pairs: list[list[int]], params: dict[str, Any]) -> list[int]:
    from compute.services.dashboards import dashboard_build

    return [dashboard_build(sae_id=sae, corpus_id=corpus, params=params).pk for sae, corpus in pairs]


def _campaign(sae_ids: list[int], domain: int, general: int, labeller: int, n_features: int) -> dict[str, Any]:
    from labelsite.services.campaigns import SourceSpec, campaign_create, campaign_open_start

    campaign = campaign_create(
        name="Distributed", domain_corpus_id=domain, general_corpus_id=general, labeller_ids=[labeller],
        sources=[SourceSpec(sae_id=pk, n_features=n_features) for pk in sae_ids],
    )  # fmt: skip
    # Tiny random SAEs are told apart by what labellers see (the audit says so); opening anyway is the admin's
    # confirmation, and beside the point here.
    job = campaign_open_start(campaign_id=campaign.pk, confirm_leak=True)
    return {"campaign_id": campaign.pk, "job_id": job.pk if job else None}


def _campaign_state(campaign_id: int) -> dict[str, Any]:
    from labelsite.models import Campaign

    campaign = Campaign.objects.get(pk=campaign_id)
    return {"status": campaign.status, "prepare_error": campaign.prepare_error, "items": campaign.items.count()}


def _render(study_id: int, campaign_id: int) -> dict[str, Any]:
    """The web's part: a study figure as SVG (drawn from the stored per-feature arrays) and a blind item."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from compute.models import SAE, Study

    users = get_user_model().objects
    evaluation = Study.objects.get(pk=study_id).evaluations.order_by("-pk").first()
    admin = Client()
    admin.force_login(users.get(username="alice"))
    figures = {}
    for name in ("rarity", "pareto"):
        url = reverse("compute:study-figure", args=[study_id, evaluation.pk, name, "svg"])
        response = admin.get(url)
        figures[name] = {"status": response.status_code, "type": response["Content-Type"],
                         "body": response.content.decode(errors="replace")}  # fmt: skip
    labeller = Client()
    labeller.force_login(users.get(username="bob"))
    item = labeller.post(reverse("label:next", args=[campaign_id]), follow=True)  # "Next item", as the page asks
    return {
        "figures": figures,
        "item": {"status": item.status_code, "path": item.request["PATH_INFO"], "html": item.content.decode()},
        "sae_names": list(SAE.objects.values_list("name", flat=True)),
    }


def _handle(request: dict[str, Any]) -> Any:
    from compute.services.training import training_start

    command = request.pop("command")
    if command == "setup":
        return _setup()
    if command == "train":
        return training_start(params=request["params"]).pk
    if command == "saes":
        return _saes(request["job_id"])
    if command == "study":
        return _study(request["training_job_id"], request["options"])
    if command == "dashboards":
        return _dashboards(request["pairs"], request["params"])
    if command == "campaign":
        return _campaign(**request)
    if command == "campaign_state":
        return _campaign_state(request["campaign_id"])
    if command == "render":
        return _render(request["study_id"], request["campaign_id"])
    return chaos_handle({"command": command, **request})


if __name__ == "__main__":
    main(_handle)
