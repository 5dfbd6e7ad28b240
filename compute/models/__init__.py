"""Records of the science: language models, corpora, SAEs, jobs, evaluations and dashboards."""

from compute.models.dashboards import DashboardSet, FeatureDashboard
from compute.models.jobs import Job, JobKind, JobStatus
from compute.models.registry import SAE, Corpus, LanguageModel

__all__ = ["SAE", "Corpus", "DashboardSet", "FeatureDashboard", "Job", "JobKind", "JobStatus", "LanguageModel"]
