"""Admin-only REST API for compute records and jobs: jobs, SAEs, evaluations and dashboards (read-only, paginated)."""

from __future__ import annotations

from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from compute.jobs import job_cancel, job_retry
from compute.ml.config import ConfigError, EvaluationConfig, JobConfig, Option, TrainingConfig, options_of
from compute.models import SAE, DashboardSet, Evaluation, FeatureDashboard, Job, Study
from compute.services.evaluation import evaluation_start
from compute.services.training import training_start
from config.errors import Conflict
from config.roles import IsAdmin


class JobSerializer(serializers.ModelSerializer):
    is_lost = serializers.BooleanField(read_only=True, help_text="Running, but its worker stopped heartbeating.")
    silent_s = serializers.FloatField(read_only=True, allow_null=True, help_text="Seconds since its last heartbeat.")

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "params",
            "result",
            "progress",
            "message",
            "stats",
            "error",
            "queue",
            "attempt",
            "worker",
            "device",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "silent_s",
            "is_lost",
            "lost_attempts",
            "stop_requested",
        ]
        read_only_fields = fields


def _option_field(opt: Option) -> serializers.Field:
    """The serializer field of one config option (same default, bounds and help as the form and the CLI)."""

    def one(**extra) -> serializers.Field:
        if opt.choices:
            return serializers.ChoiceField(choices=list(opt.choices), **extra)
        if opt.type is int:
            return serializers.IntegerField(min_value=opt.low, max_value=opt.high, **extra)
        if opt.type is float:
            return serializers.FloatField(max_value=opt.high, **extra)
        return serializers.CharField(allow_blank=True, max_length=200, **extra)

    common = {"required": False, "help_text": opt.help}
    if opt.many:
        return serializers.ListField(child=one(), min_length=1, max_length=opt.max_items, **common)
    return one(**common)


class ConfigSerializer(serializers.Serializer):
    """Record ids plus the options of `config_class` (compute.ml.config), checked as the job will check them."""

    config_class: type[JobConfig]

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for opt in options_of(self.config_class):
            fields[opt.name] = _option_field(opt)
        return fields

    def validate(self, attrs: dict) -> dict:
        try:
            config = self.config_class.from_params(attrs)
        except ConfigError as exc:
            raise serializers.ValidationError({exc.field or "non_field_errors": [str(exc)]}) from exc
        return {**attrs, **config.to_params()}


class TrainingRequestSerializer(ConfigSerializer):
    config_class = TrainingConfig
    language_model_id = serializers.IntegerField()
    general_corpus_id = serializers.IntegerField(required=False, allow_null=True)
    domain_corpus_id = serializers.IntegerField(required=False, allow_null=True)
    gsae_id = serializers.IntegerField(required=False, allow_null=True)


class EvaluationRequestSerializer(ConfigSerializer):
    config_class = EvaluationConfig
    sae_id = serializers.IntegerField()
    corpus_id = serializers.IntegerField(required=False, allow_null=True)
    general_corpus_id = serializers.IntegerField(required=False, allow_null=True)


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Job.objects.all()
    serializer_class = JobSerializer
    permission_classes = [IsAdmin]

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        if not job_cancel(job_id=job.pk):
            raise Conflict(f"Job is {job.status}; cannot cancel.")
        return Response(JobSerializer(Job.objects.get(pk=job.pk)).data)

    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        job = self.get_object()
        if not job_retry(job_id=job.pk):
            raise Conflict(f"Job is {job.status}; cannot retry.")
        return Response(JobSerializer(Job.objects.get(pk=job.pk)).data)

    @action(detail=False, methods=["post"], serializer_class=TrainingRequestSerializer)
    def train(self, request):
        """Queue a train_saes job; refused (400, nothing queued) when the options cannot work."""
        return self._start(request, TrainingRequestSerializer, training_start)

    @action(detail=False, methods=["post"], serializer_class=EvaluationRequestSerializer)
    def evaluate(self, request):
        """Queue an evaluate_sae job."""
        return self._start(request, EvaluationRequestSerializer, evaluation_start)

    def _start(self, request, serializer_class, start):
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = start(params=serializer.validated_data, created_by=request.user)  # JobInputError: config.api
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class SAESerializer(serializers.ModelSerializer):
    language_model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    train_corpus = serializers.SlugRelatedField(slug_field="name", read_only=True)
    health = serializers.SerializerMethodField(
        help_text="Training health flags: {flags: [{flag, label, reason}], spikes}."
    )

    def get_health(self, sae: SAE) -> dict:
        return sae.health()

    class Meta:
        model = SAE
        fields = [
            "id",
            "name",
            "method",
            "architecture",
            "status",
            "language_model",
            "hook_name",
            "d_in",
            "d_sae",
            "gsae",
            "train_corpus",
            "hyperparams",
            "stats",
            "health",
            "pretrained_release",
            "pretrained_id",
            "job",
            "created_at",
        ]
        read_only_fields = fields


class SAEViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = SAE.objects.select_related("language_model", "train_corpus")
    serializer_class = SAESerializer
    permission_classes = [IsAdmin]


class EvaluationSerializer(serializers.ModelSerializer):
    corpus = serializers.SlugRelatedField(slug_field="name", read_only=True)
    general_corpus = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Evaluation
        fields = ["id", "sae", "corpus", "general_corpus", "results", "job", "created_at"]
        read_only_fields = fields


class EvaluationViewSet(viewsets.ReadOnlyModelViewSet):
    """Evaluations; `?sae=<id>` keeps one SAE's."""

    serializer_class = EvaluationSerializer
    permission_classes = [IsAdmin]

    def get_queryset(self):
        queryset = Evaluation.objects.select_related("corpus", "general_corpus")
        sae = self.request.query_params.get("sae")
        return queryset.filter(sae_id=int(sae)) if sae and sae.isdigit() else queryset


class DashboardSetSerializer(serializers.ModelSerializer):
    corpus = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = DashboardSet
        fields = [
            "id",
            "sae",
            "corpus",
            "status",
            "config",
            "n_tokens",
            "n_features",
            "n_dead",
            "stats",
            "job",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class FeatureSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = FeatureDashboard
        fields = ["feature_index", "n_firing", "frequency", "max_activation"]
        read_only_fields = fields


class DashboardSetViewSet(viewsets.ReadOnlyModelViewSet):
    """Dashboard sets (one per SAE and corpus); `?sae=<id>` keeps one SAE's. `features/` lists every
    feature's firing count, frequency and maximum activation (full dashboards: the JSON export)."""

    serializer_class = DashboardSetSerializer
    permission_classes = [IsAdmin]

    def get_queryset(self):
        queryset = DashboardSet.objects.select_related("corpus")
        sae = self.request.query_params.get("sae")
        return queryset.filter(sae_id=int(sae)) if sae and sae.isdigit() else queryset

    @action(detail=True, methods=["get"], serializer_class=FeatureSummarySerializer)
    def features(self, request, pk=None):
        dset = self.get_object()
        rows = (
            FeatureDashboard.objects.filter(dashboard_set=dset)
            .order_by("feature_index")
            .only(*FeatureSummarySerializer.Meta.fields)
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(FeatureSummarySerializer(page, many=True).data)


class StudySerializer(serializers.ModelSerializer):
    domain_corpus = serializers.SlugRelatedField(slug_field="name", read_only=True)
    general_corpus = serializers.SlugRelatedField(slug_field="name", read_only=True)
    evaluations = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Study
        fields = [
            "id",
            "name",
            "description",
            "gsae",
            "saes",
            "domain_corpus",
            "general_corpus",
            "options",
            "training_job",
            "evaluations",
            "created_at",
        ]
        read_only_fields = fields


class StudyEvaluateOut(serializers.Serializer):
    """The current evaluation when it was reused, else the job queued to make one."""

    evaluation = serializers.IntegerField(required=False)
    job = serializers.IntegerField(required=False)
    reused = serializers.BooleanField()


class StudyViewSet(viewsets.ReadOnlyModelViewSet):
    """Studies. `GET …/evaluation/` is the current evaluation's every number (`?per_feature=1` adds the
    per-feature arrays); `POST …/evaluate/` reuses it when nothing changed, else queues a job (202)."""

    queryset = Study.objects.select_related("domain_corpus", "general_corpus").prefetch_related("saes", "evaluations")
    serializer_class = StudySerializer
    permission_classes = [IsAdmin]

    @action(detail=True, methods=["get"])
    def evaluation(self, request, pk=None):
        from compute.selectors.studies import evaluation_export
        from compute.services.studies import study_evaluation_current

        study = self.get_object()
        current = study_evaluation_current(study)
        if current is None:
            return Response({"detail": "No evaluation with the study's current inputs: POST evaluate/."}, status=404)
        return Response(evaluation_export(current, per_feature=request.query_params.get("per_feature") == "1"))

    @action(detail=True, methods=["post"])
    def evaluate(self, request, pk=None):
        from compute.services.studies import study_evaluate_start

        outcome = study_evaluate_start(study=self.get_object(), created_by=request.user)  # errors: config.api
        if outcome.reused:
            return Response(StudyEvaluateOut({"evaluation": outcome.evaluation.pk, "reused": True}).data)
        body = StudyEvaluateOut({"job": outcome.job.pk, "reused": False}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)
