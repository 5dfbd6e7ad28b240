"""Admin-only compute pages. The URL conf reaches every view through this package."""

from compute.views.jobs import index, job_cancel_view, job_detail, job_list, job_retry_view, selfcheck_start
from compute.views.registry import corpus_detail, corpus_list, sae_detail, sae_evaluate, sae_list, training_new

__all__ = [
    "corpus_detail",
    "corpus_list",
    "index",
    "job_cancel_view",
    "job_detail",
    "job_list",
    "job_retry_view",
    "sae_detail",
    "sae_evaluate",
    "sae_list",
    "selfcheck_start",
    "training_new",
]
