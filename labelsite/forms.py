"""Forms: the judgment form (built from the campaign's rubric and questions), skip, and admin forms."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from django import forms
from django.contrib.auth import get_user_model

from labelsite import questions as schema
from labelsite.models import MAX_REPEAT_SHARE, PANEL_EXTRAS, Campaign
from labelsite.selectors.blind import BlindCampaign
from labelsite.services import LabelError
from labelsite.services.campaigns import GOLD_EXAMPLE, gold_clean, gold_parse, rubric_format, rubric_parse


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
    """A new campaign, in plain words (the precise term in brackets where it helps)."""

    name = forms.CharField(max_length=200, help_text="Labellers see it in their list of campaigns.")
    guidelines = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        label="Instructions for labellers",
        help_text="Markdown (headings, lists, links). Labellers can open them on every item.",
    )
    rubric = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        initial=rubric_format(schema.DEFAULT_RUBRIC),
        label="Score levels (rubric)",
        help_text='One level per line, "score: what it means"; scores 0 to 9, each typed with its number key.',
    )
    saes = forms.ModelMultipleChoiceField(
        queryset=None, widget=forms.CheckboxSelectMultiple, label="Sparse autoencoders to compare (SAEs)"
    )
    features_per_sae = forms.IntegerField(min_value=1, initial=100, label="Features to draw from each SAE")
    domain_corpus = forms.ModelChoiceField(
        queryset=None, label="Subject text (domain corpus)", help_text="Text about the subject being studied."
    )
    general_corpus = forms.ModelChoiceField(
        queryset=None, label="Everyday text (general corpus)", help_text="Ordinary web text, for comparison."
    )
    min_frequency = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        label="Leave out rare features (minimum firing frequency)",
        help_text="Optional: features active on a smaller share of the subject text's tokens are never drawn "
        "(0.0001 = once in 10,000 tokens).",
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        label="Random seed",
        help_text="The same seed draws the same features and examples again.",
    )
    questions = forms.MultipleChoiceField(
        choices=list(schema.DEFAULT_GROUPS.items()),
        initial=list(schema.DEFAULT_GROUPS),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="What labellers do for each feature",
    )
    questions_json = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        label="Your own questions (JSON, optional)",
        help_text="A list of question objects (key, type, prompt, required, rubric or options, panel); "
        "replaces the questions ticked above.",
    )
    panel_order = forms.ChoiceField(
        choices=Campaign.PanelOrder.choices,
        initial=Campaign.PanelOrder.DOMAIN_FIRST,
        label="Which examples come first",
    )
    labellers = forms.ModelMultipleChoiceField(
        queryset=None, widget=forms.CheckboxSelectMultiple, help_text="They see only random item codes, never an SAE."
    )
    overlap = forms.IntegerField(
        min_value=1,
        initial=1,
        label="Labellers per feature (overlap k)",
        help_text="How many different labellers judge each feature; 2 or more lets the results measure how well "
        "labellers agree.",
    )
    hide_mapping_until_closed = forms.BooleanField(
        required=False, label="Keep which SAE each feature came from hidden from admins too, until the campaign closes"
    )
    lease_minutes = forms.IntegerField(
        min_value=1,
        max_value=24 * 60,
        initial=30,
        label="Minutes a labeller may keep an open item (lease)",
        help_text="After that the item can go to someone else.",
    )
    max_skips = forms.IntegerField(
        required=False, min_value=0, label="Skips allowed per labeller", help_text="Empty: no limit."
    )
    sampling = forms.ChoiceField(
        choices=Campaign.Sampling.choices,
        initial=Campaign.Sampling.MATCHED,
        required=False,
        label="How features are drawn (sampling)",
    )
    match_general = forms.BooleanField(
        required=False, label="When drawing alike features, match how often they fire on everyday text too"
    )
    ask_source_guess = forms.BooleanField(
        required=False,
        initial=True,
        label="Ask labellers, optionally, which SAE they think each feature came from (by a neutral letter: "
        "measures whether blinding held)",
    )
    panel_extras = forms.MultipleChoiceField(
        choices=list(PANEL_EXTRAS.items()),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Extra information on each item (panel extras)",
        help_text="By default labellers see only the examples, with the feature's strongest tokens highlighted. "
        "Each extra can give away which SAE a feature comes from; the blinding audit measures it.",
    )
    judge_only_features = forms.IntegerField(
        required=False,
        min_value=0,
        initial=0,
        label="Judge-only features per SAE",
        help_text="Features drawn at random besides the labellers' for the LLM judge alone: its scores of them "
        "narrow the prediction-powered intervals on the results page. Random sampling only.",
    )
    repeat_percent = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=round(100 * MAX_REPEAT_SHARE),
        initial=0,
        label="Repeated items (% of each labeller's items)",
        help_text="Features a labeller already judged come back later, unannounced, to measure how consistently "
        "they answer (self-agreement). 10 = about one item in ten is a repeat. Left out of the study's figures.",
    )
    gold = forms.CharField(
        required=False,
        strip=False,  # line numbers in error messages count from the first line typed
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": GOLD_EXAMPLE}),
        label="Check items with known answers (gold items, optional)",
        help_text=f'One per line: SAE name, feature number, then the answers you expect, e.g. "{GOLD_EXAMPLE}". '
        "Every labeller gets every check item, mixed in with the others; the results show how often each gave "
        "the expected answer. Left out of the study's figures.",
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
        if data.get("gold", "").strip():
            self._clean_gold(data)
        else:
            data["gold"] = []
        return data

    def _clean_gold(self, data: dict) -> None:
        """Gold lines checked at their field: against the SAEs ticked and the questions asked."""
        if "saes" not in data or "rubric" not in data or self.has_error("questions_json"):
            data.pop("gold")  # the field those name is wrong already
            return
        saes = {sae.pk: sae for sae in data["saes"]}
        try:
            questions = schema.questions_validate(list(self.campaign_questions()), rubric=data["rubric"])
        except schema.QuestionError:
            data.pop("gold")  # campaign_create says what is wrong with the questions
            return
        try:
            gold = gold_parse(data["gold"], sae_ids={sae.name: pk for pk, sae in saes.items()})
            gold_clean(gold=gold, questions=questions, saes=saes)
        except LabelError as exc:
            self.add_error("gold", str(exc))
        else:
            data["gold"] = gold

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


class PlannerForm(forms.Form):
    """The campaign form's planner (prefix "plan"): what the width of the interval on a difference between two
    sources depends on besides the design (labelsite.statistics.plan_campaign)."""

    rho = forms.FloatField(
        min_value=-1.0,
        max_value=1.0,
        initial=0.6,
        label="Judge–human correlation",
        help_text="How well the LLM judge's scores follow the labellers' mean scores (from a pilot, or a guess; "
        "0: no judge).",
    )
    feature_sd = forms.FloatField(
        min_value=0.0, initial=0.8, label="Spread of features' scores", help_text="Standard deviation, rubric points."
    )
    labeller_sd = forms.FloatField(
        min_value=0.0,
        initial=0.6,
        label="Spread of one labeller's score",
        help_text="Around the feature's score (disagreement between labellers), rubric points.",
    )
    target_width = forms.FloatField(
        min_value=0.001, required=False, initial=0.4, label="Target width", help_text="Of the 95% interval."
    )
