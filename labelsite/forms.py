"""Forms: the judgment form (built from the campaign's rubric and questions), skip, and admin forms."""

from __future__ import annotations

import secrets

from django import forms
from django.contrib.auth import get_user_model

from labelsite.models import ALL_QUESTIONS, DEFAULT_RUBRIC, PANEL_EXTRAS, Campaign
from labelsite.selectors.blind import BlindCampaign
from labelsite.services import LabelError
from labelsite.services.campaigns import rubric_format, rubric_parse
from labelsite.services.judgments import Answers

QUESTION_LABELS = {
    "domain": "Explanation from the domain examples + score",
    "general": "Explanation from the general examples + score",
    "nice": '"Nice" flag',
    "comment": "Free comment",
}


class JudgmentForm(forms.Form):
    domain_explanation = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    domain_score = forms.TypedChoiceField(coerce=int, widget=forms.RadioSelect)
    general_explanation = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    general_score = forms.TypedChoiceField(coerce=int, widget=forms.RadioSelect)
    nice = forms.BooleanField(required=False)
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    time_spent_ms = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, campaign: BlindCampaign, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        choices = [(level["score"], level["label"]) for level in campaign.rubric]
        for q in ("domain", "general"):
            if q in campaign.questions:
                self.fields[f"{q}_score"].choices = choices
                self.fields[f"{q}_score"].error_messages["required"] = f"Score the explanation from the {q} examples."
            else:
                del self.fields[f"{q}_score"], self.fields[f"{q}_explanation"]
        for q in ("nice", "comment"):
            if q not in campaign.questions:
                del self.fields[q]

    def answers(self) -> Answers:
        data = self.cleaned_data
        return Answers(
            domain_explanation=data.get("domain_explanation", ""),
            domain_score=data.get("domain_score"),
            general_explanation=data.get("general_explanation", ""),
            general_score=data.get("general_score"),
            nice=data.get("nice", False),
            comment=data.get("comment", ""),
        )


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=500, error_messages={"required": "Say briefly why you skip this item."})


def _user_label(user) -> str:
    return user.get_username() + (" (admin)" if user.is_staff else "")


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    guidelines = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}), help_text="Markdown.")
    rubric = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        initial=rubric_format(DEFAULT_RUBRIC),
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
        choices=[(q, QUESTION_LABELS[q]) for q in ALL_QUESTIONS],
        initial=list(ALL_QUESTIONS),
        widget=forms.CheckboxSelectMultiple,
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


class ReassignForm(forms.Form):
    from_user = forms.ModelChoiceField(queryset=None, label="Labeller")
    to_user = forms.ModelChoiceField(queryset=None, required=False, label="Hand over to (optional)")

    def __init__(self, *args, campaign: Campaign, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from_user"].queryset = campaign.labellers.order_by("username")
        self.fields["to_user"].queryset = get_user_model().objects.filter(is_active=True).order_by("username")
