"""Reading built dashboards: is a set ready, its features' frequencies, one feature's row."""

from __future__ import annotations

from django.db.models import Q

from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, JobStatus


def ready_set(*, sae_id: int, corpus_id: int) -> DashboardSet | None:
    """The finished dashboard set of this SAE on this corpus (SAE and corpus loaded), None until built."""
    return (
        DashboardSet.objects.select_related("sae", "corpus")
        .filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY)
        .first()
    )


def dashboards_ready(*, sae_id: int, corpus_id: int) -> bool:
    return DashboardSet.objects.filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY).exists()


def feature_frequencies(*, sae_id: int, corpus_id: int) -> list[float] | None:
    """Firing frequency of every feature (index order) on this corpus; None until built."""
    dset = ready_set(sae_id=sae_id, corpus_id=corpus_id)
    if dset is None:
        return None
    return list(dset.features.order_by("feature_index").values_list("frequency", flat=True))


def dashboard_get(*, sae_id: int, corpus_id: int, feature_index: int) -> tuple[DashboardSet, FeatureDashboard] | None:
    """One feature's dashboard row with its set; None when the set is not built or has no such feature."""
    dset = ready_set(sae_id=sae_id, corpus_id=corpus_id)
    if dset is None:
        return None
    row = dset.features.filter(feature_index=feature_index).first()
    return (dset, row) if row is not None else None


def buildable_corpora(*, sae: SAE) -> list[Corpus]:
    """Corpora on which `sae` has neither finished dashboards nor a build queued or running (name order)."""
    taken = DashboardSet.objects.filter(sae=sae).filter(
        Q(status=DashboardSet.Status.READY) | Q(job__status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
    )
    return list(Corpus.objects.exclude(pk__in=taken.values("corpus_id")).order_by("name"))
