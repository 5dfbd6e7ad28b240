"""`python manage.py demo_status`: where the demo study stands, as JSON; exit status 1 until it is ready.

Ready means: the study evaluated with its three figures drawn, the blind campaign open, and dashboards for
every campaign source on both corpora. CI runs it after `make demo DEMO_ARGS=--exit-when-done`.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from labelsite.selectors.demo import demo_status
from labelsite.services.demo import DEMO_CAMPAIGN, DEMO_PREFIX


class Command(BaseCommand):
    help = "Print where the demo study stands (JSON); exit 1 unless it is ready to use."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--prefix", default=DEMO_PREFIX, help="The demo's name prefix (make demo --prefix).")
        parser.add_argument("--campaign", default=DEMO_CAMPAIGN, help="The campaign's name.")

    def handle(self, *args, prefix: str, campaign: str, **options) -> None:
        status = demo_status(prefix=prefix, campaign_name=campaign)
        self.stdout.write(json.dumps(status, indent=2))
        if not status["ready"]:
            raise CommandError("The demo is not ready: see above (study evaluated, campaign open, dashboards).")
