"""Admin-only REST API for compute records and jobs."""

from __future__ import annotations

from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from compute.jobs import job_cancel, job_retry
from compute.models import Job
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
