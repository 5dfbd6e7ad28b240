"""Forms: the judgment form (built from the campaign's rubric and questions), skip, and admin forms."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from django import forms
from django.contrib.auth import get_user_model

from labelsite import questions as schema
from labelsite.models import PANEL_EXTRAS, Campaign
from labelsite.selectors.blind import BlindCampaign
from labelsite.services import LabelError
from labelsite.services.campaigns import rubric_format, rubric_parse


@dataclass(frozen=True)
class QuestionField:
    """A question with its bound form field and what the keyboard map gives it (a letter or the digits)."""

    question: dict
    field: forms.BoundField
    shortcut: str = ""

    @property
    def choices(self) -> list[tuple[str, str, str]]:
        """(value, label, digit key) of a score (digit = the score) or choice question (digits 1-9)."""
        if self.question["type"] == schema.SCORE:
            return [(str(lv["score"]), lv["label"], str(lv["score"])) for lv in self.question["rubric"]]
        return [(o["value"], o["label"], str(i)) for i, o in enumerate(self.question.get("options", []), start=1)]

    @property
    def as_list(self) -> list[QuestionField]:
        return [self]

    @property
    def current(self) -> str:
        value = self.field.value()
        return "" if value is None else str(value)


class JudgmentForm(forms.Form):
    """One field per question of the campaign, named by the question's key (labelsite.questions)."""

    time_spent_ms = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, campaign: BlindCampaign, components: Sequence[str] = (), **kwargs) -> None:
        initial = dict(kwargs.pop("initial", None) or {})
        self.components = list(components)
        self.per_component = [q for q in campaign.questions if q["type"] == schema.PER_COMPONENT]
        for q in self.per_component:  # one radio group per sub-component: {key}__{i}
            given = initial.pop(q["key"], None) or {}
            for i, name in enumerate(self.components):
                initial[f"{q['key']}__{i}"] = given.get(name) if isinstance(given, dict) else None
        super().__init__(*args, initial=initial, **kwargs)
        self.questions = [q for q in campaign.questions if q["type"] != schema.PER_COMPONENT]
        for q in self.questions:
            self.fields[q["key"]] = _question_field(q)
        for q in self.per_component:
            for i, name in enumerate(self.components):
                self.fields[f"{q['key']}__{i}"] = forms.TypedChoiceField(
                    choices=[(o["value"], o["label"]) for o in q["options"]],
                    required=q["required"],
                    empty_value=None,
                    error_messages={"required": f"“{q['prompt']}”: answer for {name!r}."},
                )
        self.shortcuts = schema.shortcuts(self.questions)

    def component_entries(self) -> list[dict]:
        """Per per_component question: its prompt, options and one bound field per sub-component."""
        return [
            {
                "question": q,
                "rows": [
                    {
                        "name": name,
                        "field": self[f"{q['key']}__{i}"],
                        "current": str(self[f"{q['key']}__{i}"].value() or ""),
                    }
                    for i, name in enumerate(self.components)
                ],
            }
            for q in self.per_component
            if self.components
        ]

    def entries(self) -> list[QuestionField]:
        return [QuestionField(q, self[q["key"]], self.shortcuts.get(q["key"], "")) for q in self.questions]

    def groups(self) -> dict[str | None, list[QuestionField]]:
        """Questions by the panel they are about (None: about the feature as a whole)."""
        out: dict[str | None, list[QuestionField]] = {}
        for entry in self.entries():
            out.setdefault(entry.question["panel"], []).append(entry)
        return out

    def answers(self) -> dict:
        answers = {q["key"]: self.cleaned_data.get(q["key"]) for q in self.questions}
        for q in self.per_component:
            picked = {name: self.cleaned_data.get(f"{q['key']}__{i}") for i, name in enumerate(self.components)}
            answers[q["key"]] = {name: value for name, value in picked.items() if value is not None}
        return answers


def _question_field(q: dict) -> forms.Field:
    kind, required = q["type"], q["required"]
    missing = {"required": schema.missing_message(q)}
    if kind == schema.TEXT:
        return forms.CharField(required=required, max_length=schema.MAX_TEXT, error_messages=missing)
    if kind == schema.YESNO:
        return forms.BooleanField(required=False)
    if kind == schema.SCORE:
        choices = [(lv["score"], lv["label"]) for lv in q["rubric"]]
        return forms.TypedChoiceField(
            choices=choices, coerce=int, required=required, empty_value=None, error_messages=missing
        )
    choices = [(o["value"], o["label"]) for o in q["options"]]
    return forms.TypedChoiceField(choices=choices, required=required, empty_value=None, error_messages=missing)


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=500, error_messages={"required": "Say briefly why you skip this item."})


def _user_label(user) -> str:
    return user.get_username() + (" (admin)" if user.is_staff else "")


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    guidelines = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}), help_text="Markdown.")
    rubric = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        initial=rubric_format(schema.DEFAULT_RUBRIC),
        help_text='One level per line, "score: description"; scores 0-9 (one number key each).',
    )
    saes = forms.ModelMultipleChoiceField(queryset=None, widget=forms.CheckboxSelectMultiple, label="SAEs")
    features_per_sae = forms.IntegerField(min_value=1, initial=100, label="Random features per SAE")
    domain_corpus = forms.ModelChoiceField(queryset=None)
    general_corpus = forms.ModelChoiceField(queryset=None)
    min_frequency = forms.FloatField(
        required=False, min_value=0.0, max_value=1.0, help_text="Optional: skip features firing less often on D."
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1)
    questions = forms.MultipleChoiceField(
        choices=list(schema.DEFAULT_GROUPS.items()),
        initial=list(schema.DEFAULT_GROUPS),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    questions_json = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        label="Questions (JSON, optional)",
        help_text="A list of question objects (key, type, prompt, required, rubric or options, panel); "
        "replaces the questions ticked above.",
    )
    panel_order = forms.ChoiceField(choices=Campaign.PanelOrder.choices, initial=Campaign.PanelOrder.DOMAIN_FIRST)
    labellers = forms.ModelMultipleChoiceField(queryset=None, widget=forms.CheckboxSelectMultiple)
    overlap = forms.IntegerField(min_value=1, initial=1, label="Overlap k (judgments per item)")
    hide_mapping_until_closed = forms.BooleanField(
        required=False, label="Hide the SAE mapping from admins too until closed"
    )
    lease_minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=30, label="Lease (minutes)")
    max_skips = forms.IntegerField(
        required=False, min_value=0, label="Skips per labeller", help_text="Empty: no limit."
    )
    sampling = forms.ChoiceField(choices=Campaign.Sampling.choices, initial=Campaign.Sampling.MATCHED, required=False)
    match_general = forms.BooleanField(
        required=False, label="Matched sampling: stratify on log frequency on general text too"
    )
    panel_extras = forms.MultipleChoiceField(
        choices=list(PANEL_EXTRAS.items()),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Panel extras",
        help_text="Warning: each extra may reveal which SAE a feature comes from (the blinding audit measures it). "
        "By default labellers see highlighted contexts only.",
    )

    def __init__(self, *args, **kwargs) -> None:
        from compute.models import SAE, Corpus

        super().__init__(*args, **kwargs)
        self.fields["saes"].queryset = SAE.objects.filter(status=SAE.Status.READY).select_related("language_model")
        self.fields["saes"].label_from_instance = lambda sae: (
            f"{sae.name} ({sae.get_method_display()}, {sae.d_sae} features, {sae.language_model})"
        )
        self.fields["domain_corpus"].queryset = Corpus.objects.filter(kind=Corpus.Kind.DOMAIN)
        self.fields["general_corpus"].queryset = Corpus.objects.filter(kind=Corpus.Kind.GENERAL)
        self.fields["labellers"].queryset = get_user_model().objects.filter(is_active=True).order_by("username")
        self.fields["labellers"].label_from_instance = _user_label
        self.fields["seed"].initial = secrets.randbelow(10**6)

    def clean_rubric(self) -> list[dict]:
        try:
            return rubric_parse(self.cleaned_data["rubric"])
        except LabelError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_questions_json(self) -> list | None:
        text = self.cleaned_data["questions_json"].strip()
        if not text:
            return None
        try:
            questions = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(questions, list) or not questions:
            raise forms.ValidationError("Give a non-empty list of question objects.")
        return questions  # checked in full by campaign_create, with the rubric above for score questions

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("questions_json") and "questions" in data and not data["questions"]:
            self.add_error("questions", "Tick at least one question (or give them as JSON).")
        return data

    def campaign_questions(self) -> list:
        """The questions to create the campaign with (the JSON list, else the ticked default groups)."""
        return self.cleaned_data.get("questions_json") or self.cleaned_data["questions"]


class ReassignForm(forms.Form):
    from_user = forms.ModelChoiceField(queryset=None, label="Labeller")
    to_user = forms.ModelChoiceField(queryset=None, required=False, label="Hand over to (optional)")

    def __init__(self, *args, campaign: Campaign, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from_user"].queryset = campaign.labellers.order_by("username")
        self.fields["to_user"].queryset = get_user_model().objects.filter(is_active=True).order_by("username")
