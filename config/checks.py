"""Deployment checks of our own settings (run by `manage.py check --deploy`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_secret_key_is_set(app_configs, **kwargs) -> list[Warning]:
    from config.settings import _DEV_SECRET

    if settings.SECRET_KEY == _DEV_SECRET:
        return [
            Warning(
                "SECRET_KEY is the built-in development key.",
                hint="Set the SECRET_KEY environment variable to a long random string in production.",
                id="config.W001",
            )
        ]
    return []


@register("artifacts", deploy=True)
def check_artifact_storage_takes_writes(app_configs, **kwargs) -> list[Error]:
    """A missing bucket or one that refuses writes stops a deploy here, not in the middle of a job."""
    from config.storage import artifact_storage_problem

    problem = artifact_storage_problem()
    if problem:
        return [Error(problem, hint="Workers refuse to start on the same storage.", id="config.E002")]
    return []
