"""python manage.py plan_campaign …: the interval width on the difference between two sources for a design, with
and without the LLM judge, and the human items needed for a target width (JSON)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from labelsite import statistics as st
from labelsite.selectors.admin import campaign_by_ref
from labelsite.services import LabelError


class Command(BaseCommand):
    help = (
        "Plan a campaign: the 95% interval width on the difference between two sources for a number of human "
        "items per source and labellers per item, human-only and with the judge (prediction-powered), and the "
        "items needed for --target-width. Give the spreads and the judge's correlation, or --pilot CAMPAIGN "
        "--question KEY to measure them on a campaign's judgments (and its judge's answers)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--pilot", help="a pilot campaign's id or name: measure the spreads (and ρ) there")
        parser.add_argument("--question", default="domain_score", help="the pilot's score question")
        parser.add_argument("--feature-sd", type=float, help="spread of features' scores (without a pilot)")
        parser.add_argument("--labeller-sd", type=float, help="spread of one labeller around a feature's score")
        parser.add_argument("--rho", type=float, help="the judge's correlation with human mean scores")
        parser.add_argument(
            "--rho-labellers", type=float, help="labellers per feature behind --rho (default --labellers)"
        )
        parser.add_argument("--items", type=int, default=50, help="human-scored features per source")
        parser.add_argument("--labellers", type=int, default=2, help="labellers per feature")
        parser.add_argument(
            "--judge-only", type=int, default=1000, help="features per source scored by the judge alone"
        )
        parser.add_argument("--target-width", type=float, help="the interval width to reach")

    def handle(self, *args, **options) -> None:
        measured = {}
        if options["pilot"]:
            measured = self._pilot(options["pilot"], options["question"])
        feature_sd = _given(options, "feature_sd", measured.get("pilot", {}).get("feature_sd"))
        labeller_sd = _given(options, "labeller_sd", measured.get("pilot", {}).get("labeller_sd"))
        rho = _given(options, "rho", measured.get("rho"))
        rho_labellers = options["rho_labellers"] or measured.get("rho_labellers") or options["labellers"]
        for name, value, low, high in (
            ("--rho", rho, -1.0, 1.0),
            ("--feature-sd", feature_sd, 0.0, None),
            ("--labeller-sd", labeller_sd, 0.0, None),
        ):
            if value < low or (high is not None and value > high):
                raise CommandError(f"{name} must be {'between -1 and 1' if high else 'at least 0'}; got {value}.")
        if options["items"] < 2 or options["labellers"] < 1 or options["judge_only"] < 1 or rho_labellers <= 0:
            raise CommandError("--items needs at least 2, --labellers, --rho-labellers and --judge-only at least 1.")
        if options["target_width"] is not None and options["target_width"] <= 0:
            raise CommandError("--target-width must be above 0.")
        plan = st.plan_campaign(
            feature_sd=feature_sd,
            labeller_sd=labeller_sd,
            rho=rho,
            rho_labellers=rho_labellers,
            items=options["items"],
            labellers=options["labellers"],
            judge_only=options["judge_only"],
            target_width=options["target_width"],
        )
        self.stdout.write(json.dumps({**plan, "measured": measured or None}, indent=2))

    def _pilot(self, ref: str, question: str) -> dict:
        from labelsite.selectors.judge_results import pilot_inputs

        campaign = campaign_by_ref(ref)
        if campaign is None:
            raise CommandError(f"No campaign with id or name {ref!r}.")
        try:
            return pilot_inputs(campaign=campaign, question_key=question)
        except LabelError as exc:
            raise CommandError(str(exc)) from exc


def _given(options: dict, key: str, measured: float | None) -> float:
    """An option's value, else the pilot's measurement; a CommandError naming the option when neither is there."""
    value = options[key] if options[key] is not None else measured
    if value is None:
        flag = "--" + key.replace("_", "-")
        raise CommandError(f"Give {flag}, or a --pilot campaign that measures it (rho needs the judge's answers).")
    return float(value)
