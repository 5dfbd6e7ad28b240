"""Blind labelling campaigns: campaigns, their sources (SAEs), blind items, leases and judgments.

Overlap and "never twice" are enforced by the database, not only by Python:
- `Item.slots_taken <= Item.overlap` and `Item.judgment_count <= Item.overlap` (check constraints),
- one Assignment and one Judgment per (item, labeller) (unique constraints).
Services change the counters with F() updates inside the transaction that holds the item's row lock.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labelsite import questions as schema

# 2**31 - 1 is prime, so x -> (a*x + b) mod P is a permutation of [0, P): a stable per-labeller shuffle.
SHUFFLE_PRIME = 2_147_483_647


def default_questions() -> list[dict]:
    return schema.default_questions()


def default_rubric() -> list[dict]:
    """Only migration 0001 names this (campaigns had one rubric before questions carried their own)."""
    return schema.default_rubric()


# A spreadsheet reads a cell starting with one of these as a formula (CSV injection); codes never do.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_CODE_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_item_code() -> str:
    """A random opaque code: 12 URL-safe characters (~71.9 random bits), the first a letter or digit.

    The first character is never `-` (nor `_`), so the code exports verbatim to CSV: no spreadsheet
    reads it as a formula and no guard has to change it. No relation to source or creation order.
    """
    return secrets.choice(_CODE_FIRST) + secrets.token_urlsafe(9)[1:]


def new_shuffle_key() -> int:
    return secrets.randbelow(SHUFFLE_PRIME)


# What a blind panel may show beyond highlighted contexts; each one can reveal the source (see
# labelsite.services.panels), so they are off by default and switched on per campaign by an admin.
PANEL_EXTRAS: dict[str, str] = {
    "frequency": "How often the feature fires (a sentence, and a mark on rare features)",
    "histogram": "Chart of how strongly the feature fires (activation histogram)",
    "logits": "Words the feature makes more likely, with their scores (output logits)",
    "intensity": "Shading by how strongly each token fires relative to the feature's strongest activation "
    "(without it, shading shows each token's rank among the panel's activating tokens)",
    "magnitudes": "The strength of each example as a number (raw activation values)",
    "probe": "Live probe: labellers type a text of their own and see how strongly the feature responds to each "
    "token, compared with its strongest response on the domain text",
}


def default_panel_extras() -> list[str]:
    return []


def default_gold() -> list[dict]:
    return []


MAX_REPEAT_SHARE = 0.5  # at most every other item a labeller sees is one they judged before


class Campaign(models.Model):
    class Sampling(models.TextChoices):
        RANDOM = "random", "At random from each SAE"
        MATCHED = (
            "matched",
            (
                "Alike in how often they fire: every SAE gives the same mix of rare and common features "
                "(matched sampling on log firing frequency)"
            ),
        )

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PREPARING = "preparing", "Preparing dashboards"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    class PanelOrder(models.TextChoices):
        DOMAIN_FIRST = "domain_first", "Subject-text examples first (domain)"
        GENERAL_FIRST = "general_first", "Everyday-text examples first (general)"
        RANDOM = "random", "Either, at random for each item and labeller"

    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown to labellers.")
    questions = models.JSONField(
        default=default_questions, help_text="Ordered list of question objects (see labelsite.questions)."
    )
    domain_corpus = models.ForeignKey("compute.Corpus", on_delete=models.PROTECT, related_name="+")
    general_corpus = models.ForeignKey("compute.Corpus", on_delete=models.PROTECT, related_name="+")
    min_frequency = models.FloatField(
        null=True, blank=True, help_text="Skip features firing less often than this on the domain corpus."
    )
    seed = models.PositiveIntegerField(default=0)
    sampling = models.CharField(max_length=10, choices=Sampling.choices, default=Sampling.RANDOM)
    match_general = models.BooleanField(
        default=False, help_text="Matched sampling: stratify on log frequency on general text too."
    )
    sampling_report = models.JSONField(default=dict, blank=True, help_text="How well the strata matched.")
    panel_extras = models.JSONField(
        default=default_panel_extras, blank=True, help_text=f"Switched-on panel extras: {sorted(PANEL_EXTRAS)}."
    )
    audit = models.JSONField(default=dict, blank=True, help_text="The last blinding audit.")
    panel_order = models.CharField(max_length=20, choices=PanelOrder.choices, default=PanelOrder.DOMAIN_FIRST)
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Judgments per item (k).")
    hide_mapping_until_closed = models.BooleanField(default=False)
    lease_seconds = models.PositiveIntegerField(default=30 * 60)
    max_skips = models.PositiveIntegerField(
        null=True, blank=True, help_text="Skips allowed per labeller (empty: no limit)."
    )
    # Quality control (as in Potato): repeated items and gold items, both left out of the study's breakdowns.
    repeat_share = models.FloatField(
        default=0.0, help_text="Share of a labeller's items that are repeats of items they judged (0 to 0.5)."
    )
    gold = models.JSONField(
        default=default_gold,
        blank=True,
        help_text='Gold items: [{"sae_id", "feature_index", "expected": {question key: answer}}].',
    )
    judge_only_features = models.PositiveIntegerField(
        default=0,
        help_text="Per SAE, features sampled besides the labellers' for the LLM judge alone (random sampling only).",
    )
    labellers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="label_campaigns")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT, db_index=True)
    build_jobs = models.ManyToManyField("compute.Job", blank=True, related_name="+")
    prepare_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="campaign_overlap_at_least_1"),
            models.CheckConstraint(
                condition=Q(repeat_share__gte=0.0, repeat_share__lte=MAX_REPEAT_SHARE), name="campaign_repeat_share"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def source_letters(self) -> dict[int, str]:
        """{source id: the neutral letter labellers guess it by}: A, B, ... in an order drawn with the campaign's
        seed, so a letter does not follow the order in which the SAEs were chosen."""
        import random

        ids = list(self.sources.order_by("pk").values_list("pk", flat=True))
        random.Random(f"letters:{self.seed}:{self.pk}").shuffle(ids)
        return {pk: chr(ord("A") + i) for i, pk in enumerate(ids)}

    @property
    def mapping_visible(self) -> bool:
        """Whether admins may see which SAE an item came from."""
        return not self.hide_mapping_until_closed or self.status == self.Status.CLOSED


class CampaignSAE(models.Model):
    """One source of a campaign: an SAE and how many random features to sample from it."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sources")
    sae = models.ForeignKey("compute.SAE", on_delete=models.PROTECT, related_name="+")
    n_features = models.PositiveIntegerField(default=100)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "sae"], name="campaign_sae_once")]

    def __str__(self) -> str:
        return f"{self.campaign} · {self.sae}"


# The blind panels each item stores: tens of KB of HTML, read only to show the item.
PANEL_HTML_FIELDS = ("domain_html", "general_html", "decomposition_html")


class Item(models.Model):
    """One feature to judge, known to labellers only by its random code.

    A regular item is part of the study. A judge-only item is scored by the LLM judge alone (overlap 0, so the
    slot constraint keeps it from every labeller): it widens the judge's sample for prediction-powered
    results. Quality-control items are not (results leave them out of every
    breakdown): a repeat shows its original's panels again, byte for byte, under a new code, to labellers who
    judged the original; a gold item has answers an admin expects. Labellers are never told an item's kind.
    """

    class Kind(models.TextChoices):
        REGULAR = "regular", "Regular"
        REPEAT = "repeat", "Repeat"
        GOLD = "gold", "Gold"
        JUDGE = "judge", "Judge only"  # overlap 0: never leased to a labeller

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    source = models.ForeignKey(CampaignSAE, on_delete=models.PROTECT, related_name="items")
    feature_index = models.PositiveIntegerField()
    code = models.CharField(max_length=16, unique=True, default=new_item_code)
    shuffle_key = models.BigIntegerField(default=new_shuffle_key)
    overlap = models.PositiveSmallIntegerField()
    slots_taken = models.PositiveSmallIntegerField(default=0, help_text="Active leases + judgments.")
    judgment_count = models.PositiveSmallIntegerField(default=0)
    # Rendered once when the campaign opens, so the labelling page is one row read.
    domain_html = models.TextField(blank=True)
    general_html = models.TextField(blank=True)
    # The feature's measured decomposition as a blind panel, for per_component questions (empty without one).
    decomposition_html = models.TextField(blank=True)
    components = models.JSONField(default=list, blank=True, help_text="Sub-component names shown in that panel.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REGULAR)
    repeat_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="repeats",
        help_text="A repeat's original.",
    )
    expected_answers = models.JSONField(
        default=dict, blank=True, help_text="A gold item's expected answers {question key: answer}."
    )

    class Meta:
        constraints = [
            # A feature once per campaign, as a regular or a gold item; its repeats are the same feature again.
            models.UniqueConstraint(
                fields=["campaign", "source", "feature_index"], condition=~Q(kind="repeat"), name="item_feature_once"
            ),
            models.CheckConstraint(
                condition=Q(kind="repeat", repeat_of__isnull=False) | (~Q(kind="repeat") & Q(repeat_of__isnull=True)),
                name="item_repeat_has_original",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["regular", "repeat", "gold", "judge"]), name="item_kind_known"
            ),
            models.CheckConstraint(condition=Q(slots_taken__lte=models.F("overlap")), name="item_slots_at_most_k"),
            models.CheckConstraint(
                condition=Q(judgment_count__lte=models.F("overlap")), name="item_judgments_at_most_k"
            ),
        ]
        # Covering: counting open items and drawing the next one read only this index, never the rows and
        # their panel HTML (tens of KB each), so both stay fast in a campaign of 10,000 items.
        indexes = [
            models.Index(
                fields=["campaign", "kind", "slots_taken", "overlap", "judgment_count", "shuffle_key", "repeat_of"],
                name="item_open_slots_cover",
            )
        ]

    def __str__(self) -> str:
        return self.code


class Assignment(models.Model):
    """A labeller's hold on an item: a lease while open, then done (judged), skipped, or expired.

    An expired lease keeps its row (the item is not served to this labeller again, and answers typed on
    a page left open can still be submitted while a slot is free) but no longer takes a slot.
    """

    class Status(models.TextChoices):
        HELD = "held", "Held"
        DONE = "done", "Judged"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Lease expired"

    SKIP_UNDO_S = 120  # how long a labeller can take back a skip

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    labeller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.HELD)
    reason = models.CharField(max_length=40, blank=True, help_text="Which stage picked the item.")
    skip_reason = models.CharField(max_length=500, blank=True)
    skipped_at = models.DateTimeField(
        null=True, blank=True, help_text="When the labeller skipped it; kept when the skip is undone (it still counts)."
    )
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "labeller"], name="assignment_once_per_labeller"),
            # One item at a time: a labeller cannot open several items to compare them before judging.
            models.UniqueConstraint(
                fields=["campaign", "labeller"], condition=Q(status="held"), name="assignment_one_held_per_labeller"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "labeller", "status"], name="assignment_by_labeller"),
            models.Index(fields=["campaign", "status", "expires_at"], name="assignment_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} · {self.labeller_id} · {self.status}"

    def skip_undo_until(self):
        """Until when this skip can be undone (None: not skipped, or too late)."""
        if self.status != self.Status.SKIPPED or self.skipped_at is None:
            return None
        until = self.skipped_at + timedelta(seconds=self.SKIP_UNDO_S)
        return until if until > timezone.now() else None


class Judgment(models.Model):
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="judgments")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="judgments")
    labeller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments")
    # {question key: answer}, validated against the campaign's questions (labelsite.questions).
    answers = models.JSONField(default=dict, blank=True)
    panel_order = models.CharField(max_length=20, blank=True, help_text="Which panel the labeller saw first.")
    time_spent_ms = models.PositiveIntegerField(default=0)
    revisions = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["item", "labeller"], name="judgment_once_per_labeller")]
        indexes = [models.Index(fields=["campaign", "labeller"], name="judgment_by_labeller")]

    def __str__(self) -> str:
        return f"Judgment of {self.item_id} by {self.labeller_id}"


class JudgmentRevision(models.Model):
    """An earlier version of a judgment, kept when the labeller revised it (written by judgment_submit only).

    `version` counts from 0 (the first submit); `saved_at` is when that version was saved, `replaced_at` when
    the next one replaced it."""

    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="history")
    version = models.PositiveIntegerField()
    answers = models.JSONField(default=dict, blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    saved_at = models.DateTimeField()
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["judgment", "version"]
        constraints = [models.UniqueConstraint(fields=["judgment", "version"], name="judgment_revision_once")]

    def __str__(self) -> str:
        return f"Version {self.version} of judgment {self.judgment_id}"


class JudgeAnswer(models.Model):
    """The LLM judge's answers to a campaign's score and choice questions on one item's blind panels.

    Written by the judge job only (`labelsite.services.judge`); never read by the labeller-facing selectors,
    so no labeller sees them. `call` keeps the prompt, the raw answer, the model and its settings."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="judge_answers")
    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="judge_answer")
    answers = models.JSONField(default=dict, help_text="{question key: answer}, as a labeller's Judgment.answers.")
    model = models.CharField(max_length=200)
    call = models.ForeignKey("compute.LLMCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item_id"]

    def __str__(self) -> str:
        return f"Judge answer for {self.item_id} ({self.model})"
