"""Records of the science: language models, corpora, SAEs, jobs, evaluations and dashboards."""

from compute.models.autointerp import AutoInterpFeature, Explanation, ExplanationScore
from compute.models.dashboards import DashboardSet, FeatureDashboard
from compute.models.decomposition import Decomposition, ProbeRequest
from compute.models.jobs import Job, JobKind, JobStatus
from compute.models.llm import LLMCall
from compute.models.registry import SAE, Corpus, Evaluation, LanguageModel
from compute.models.studies import FeatureMeasurements, Study, StudyEvaluation

__all__ = [
    "SAE",
    "AutoInterpFeature",
    "Corpus",
    "DashboardSet",
    "Decomposition",
    "Evaluation",
    "Explanation",
    "ExplanationScore",
    "FeatureMeasurements",
    "FeatureDashboard",
    "Job",
    "JobKind",
    "JobStatus",
    "LLMCall",
    "LanguageModel",
    "ProbeRequest",
    "Study",
    "StudyEvaluation",
]
