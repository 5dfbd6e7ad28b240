"""Admin-only REST API for compute records and jobs: jobs, SAEs, evaluations and dashboards (read-only, paginated)."""

from __future__ import annotations

from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from compute.jobs import job_cancel, job_retry
from compute.models import SAE, DashboardSet, Evaluation, FeatureDashboard, Job
from config.roles import IsAdmin


class JobSerializer(serializers.ModelSerializer):
    is_stale = serializers.BooleanField(read_only=True)

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
            "is_stale",
        ]
        read_only_fields = fields


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Job.objects.all()
    serializer_class = JobSerializer
    permission_classes = [IsAdmin]

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        if not job_cancel(job_id=job.pk):
            return Response({"detail": f"Job is {job.status}; cannot cancel."}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(Job.objects.get(pk=job.pk)).data)

    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        job = self.get_object()
        if not job_retry(job_id=job.pk):
            return Response({"detail": f"Job is {job.status}; cannot retry."}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(Job.objects.get(pk=job.pk)).data)


class SAESerializer(serializers.ModelSerializer):
    language_model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    train_corpus = serializers.SlugRelatedField(slug_field="name", read_only=True)

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
