"""`python manage.py study ...`: create a study (by hand or from a training run), evaluate all its SAEs in
one job (one model pass per corpus; reused when nothing changed), and export its numbers."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compute.jobs import JobInputError
from compute.models import SAE, Corpus, Job, JobStatus, Study
from compute.selectors.studies import evaluation_csv, evaluation_export
from compute.services.studies import study_create, study_create_from_job, study_evaluate_start, study_options

from ._follow import follow_job


def _get(model, value: str):
    found = model.objects.filter(pk=int(value)).first() if value.isdigit() else None
    found = found or model.objects.filter(name=value).first()
    if found is None:
        raise CommandError(f"No {model._meta.verbose_name} named {value!r}.")
    return found


class Command(BaseCommand):
    help = "Create, evaluate and export studies (a GSAE, a domain corpus, a general corpus, domain SAEs)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a study by hand")
        create.add_argument("name")
        create.add_argument("--gsae", required=True, help="GSAE name or id")
        create.add_argument("--domain", required=True, help="domain corpus D")
        create.add_argument("--general", required=True, help="general corpus")
        create.add_argument("--saes", nargs="+", required=True, help="domain SAE names or ids")
        from_job = sub.add_parser("from-job", help="the study of a finished training run")
        from_job.add_argument("job", type=int)
        defaults = study_options({})
        for p in (create, from_job):
            p.add_argument("--eval-tokens", type=int, default=defaults["eval_tokens"])
            p.add_argument("--frequency-tokens", type=int, default=defaults["frequency_tokens"])
        evaluate = sub.add_parser("evaluate", help="evaluate every SAE of the study (reused when unchanged)")
        evaluate.add_argument("study")
        evaluate.add_argument("--queue", action="store_true", help="queue for a worker instead of running here")
        export = sub.add_parser("export", help="the current evaluation as CSV or JSON")
        export.add_argument("study")
        export.add_argument("--format", choices=["csv", "json"], default="csv")
        export.add_argument("--per-feature", action="store_true", help="JSON: add the per-feature arrays")
        export.add_argument("-o", "--output", help="file to write (default: standard output)")

    def handle(self, *args, action: str, **o) -> None:
        try:
            getattr(self, action.replace("-", "_"))(**o)
        except JobInputError as exc:
            raise CommandError(str(exc)) from exc

    def create(self, *, name, gsae, domain, general, saes, eval_tokens, frequency_tokens, **_) -> None:
        study = study_create(
            name=name,
            gsae=_get(SAE, gsae),
            domain_corpus=_get(Corpus, domain),
            general_corpus=_get(Corpus, general),
            saes=[_get(SAE, s) for s in saes],
            options={"eval_tokens": eval_tokens, "frequency_tokens": frequency_tokens},
        )
        self.stdout.write(f"Created study {study.name!r} with {study.saes.count()} domain SAEs.")

    def from_job(self, *, job, eval_tokens, frequency_tokens, **_) -> None:
        record = Job.objects.filter(pk=job).first()
        if record is None:
            raise CommandError(f"No job {job}.")
        options = {"eval_tokens": eval_tokens, "frequency_tokens": frequency_tokens}
        study = study_create_from_job(job=record, options=options)
        self.stdout.write(f"Study {study.name!r}: GSAE {study.gsae.name}, {study.saes.count()} domain SAEs.")

    def evaluate(self, *, study, queue, **_) -> None:
        record = _get(Study, study)
        outcome = study_evaluate_start(study=record, enqueue=queue)
        if outcome.reused:
            self.stdout.write(f"Nothing changed since evaluation {outcome.evaluation.pk}: reusing it.")
            evaluation = outcome.evaluation
        else:
            job = follow_job(job=outcome.job, inline=not queue)
            if job.status != JobStatus.SUCCEEDED:
                raise CommandError(f"Job {job.pk} {job.status}: {job.error or job.message}")
            evaluation = record.evaluations.get(pk=job.result["evaluation"])
        self.stdout.write(evaluation_csv(evaluation))
        for item in evaluation.results.get("unwise", []):
            reasons = "; ".join(f"{f['label']}: {f['reason']}" for f in item["flags"])
            self.stdout.write(f"UNWISE TO COMPARE {item['name']}: {reasons}")

    def export(self, *, study, format, per_feature, output, **_) -> None:
        from compute.services.studies import study_evaluation_current

        record = _get(Study, study)
        evaluation = study_evaluation_current(record)
        if evaluation is None:
            raise CommandError(f"Study {record.name!r} has no evaluation of its current inputs: run `study evaluate`.")
        if format == "csv":
            text = evaluation_csv(evaluation)
        else:
            text = json.dumps(evaluation_export(evaluation, per_feature=per_feature), indent=1)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text)
