"""python manage.py audit_blinding CAMPAIGN: how well the source is predicted from what labellers see (JSON)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from labelsite.selectors.admin import campaign_by_ref
from labelsite.services import LabelError
from labelsite.services.audit import campaign_audit


class Command(BaseCommand):
    help = "Run the blinding audit of a campaign (id or name) and print its result as JSON."

    def add_arguments(self, parser) -> None:
        parser.add_argument("campaign", help="campaign id or name")

    def handle(self, *args, **options) -> None:
        ref = options["campaign"]
        campaign = campaign_by_ref(ref)
        if campaign is None:
            raise CommandError(f"No campaign with id or name {ref!r}.")
        try:
            result = campaign_audit(campaign_id=campaign.pk)
        except LabelError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result.as_dict(), indent=2))
