"""What a labeller may see: blind items, their own judgments, their campaigns and progress."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import markdown
import nh3
from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from labelsite import questions as schema
from labelsite.models import PANEL_HTML_FIELDS, Assignment, Campaign, Item, Judgment

PANEL_TITLES = {"domain": "Top activations on domain text", "general": "Top activations on general web text"}
DECOMPOSITION_TITLE = "Proposed sub-components and their activations"


@dataclass(frozen=True)
class Panel:
    kind: str  # "domain" or "general": which corpus the examples come from (not which SAE)
    title: str
    html: str


@dataclass(frozen=True)
class BlindCampaign:
    id: int
    name: str
    status: str
    status_label: str
    guidelines_html: str
    questions: list[dict]  # labelsite.questions: the form, keyboard map and serializer derive from these
    overlap: int
    offers_probe: bool = False  # the live probe (panel extra "probe"), answered by item code
    shading_by_intensity: bool = False  # panel extra "intensity"; else a token's shade is its rank in the panel

    @property
    def rubrics(self) -> list[dict]:
        return schema.rubrics(self.questions)


@dataclass(frozen=True)
class Progress:
    done: int
    held: int
    skipped: int
    available: int

    @property
    def remaining(self) -> int:
        return self.held + self.available

    @property
    def total(self) -> int:
        return self.done + self.remaining

    @property
    def percent(self) -> int:
        """Share judged; 0 when there is nothing yet (a preparing campaign is not "complete")."""
        return round(100 * self.done / self.total) if self.total else 0


@dataclass(frozen=True)
class BlindItem:
    code: str
    campaign: BlindCampaign
    panels: list[Panel]
    status: str  # held / done / expired (a skipped item is never returned)
    answers: dict = field(default_factory=dict)  # the labeller's own answers {question key: value}, if any
    judged_at: datetime | None = None  # when the labeller last saved them
    decomposition: Panel | None = None  # the feature's measured sub-components (per_component questions)
    components: list[str] = field(default_factory=list)

    @property
    def editable(self) -> bool:
        return self.campaign.status == Campaign.Status.OPEN

    @property
    def panel_order(self) -> str:
        return ",".join(p.kind for p in self.panels)


@lru_cache(maxsize=256)
def guidelines_render(text: str) -> str:
    """Markdown to HTML, then sanitised (admins write it, labellers read it)."""
    return nh3.clean(markdown.markdown(text, extensions=["sane_lists", "tables", "fenced_code"]))


def _campaign(row: dict, prefix: str = "") -> BlindCampaign:
    status = row[f"{prefix}status"]
    return BlindCampaign(
        id=row[f"{prefix}id"],
        name=row[f"{prefix}name"],
        status=status,
        status_label=Campaign.Status(status).label,
        guidelines_html=guidelines_render(row[f"{prefix}guidelines"]),
        questions=row[f"{prefix}questions"],
        overlap=row[f"{prefix}overlap"],
        offers_probe="probe" in (row[f"{prefix}panel_extras"] or []),
        shading_by_intensity="intensity" in (row[f"{prefix}panel_extras"] or []),
    )


_CAMPAIGN_FIELDS = ("id", "name", "status", "guidelines", "questions", "overlap", "panel_extras")


def blind_campaign(*, campaign_id: int, labeller) -> BlindCampaign | None:
    """The campaign if the user labels in it (and it is past the draft stage)."""
    row = (
        Campaign.objects.filter(pk=campaign_id, labellers=labeller)
        .exclude(status=Campaign.Status.DRAFT)
        .values(*_CAMPAIGN_FIELDS)
        .first()
    )
    return _campaign(row) if row else None


def blind_campaigns(*, labeller) -> list[tuple[BlindCampaign, Progress]]:
    rows = (
        Campaign.objects.filter(labellers=labeller)
        .exclude(status=Campaign.Status.DRAFT)
        .order_by("-created_at", "-id")
        .values(*_CAMPAIGN_FIELDS)
    )
    return [(c, labeller_progress(campaign=c, labeller_id=labeller.pk)) for c in map(_campaign, rows)]


def panel_kinds(*, panel_order: str, item_code: str, labeller_id: int) -> list[str]:
    if panel_order == Campaign.PanelOrder.GENERAL_FIRST:
        return ["general", "domain"]
    if panel_order == Campaign.PanelOrder.RANDOM:
        digest = hmac.new(settings.SECRET_KEY.encode(), f"panels:{item_code}:{labeller_id}".encode(), hashlib.sha256)
        if digest.digest()[0] & 1:
            return ["general", "domain"]
    return ["domain", "general"]


ANSWER_FIELDS = ("answers", "time_spent_ms", "revisions", "updated_at")


def blind_item(*, item_code: str, labeller) -> BlindItem | None:
    """The item if it is (or was) assigned to this labeller and not skipped; constant number of queries.

    A skipped item is gone for its labeller (None: pages and API answer 404), so nobody can skip through a
    campaign to look at every item before judging.
    """
    row = (
        Assignment.objects.filter(item__code=item_code, labeller=labeller, campaign__labellers=labeller)
        .exclude(status=Assignment.Status.SKIPPED)
        .values(
            "status",
            "item__code",
            *(f"item__{f}" for f in PANEL_HTML_FIELDS),
            "item__components",
            *(f"campaign__{f}" for f in _CAMPAIGN_FIELDS),
            "campaign__panel_order",
        )
        .first()
    )
    if row is None:
        return None
    campaign = _campaign(row, "campaign__")
    kinds = panel_kinds(panel_order=row["campaign__panel_order"], item_code=item_code, labeller_id=labeller.pk)
    judgment = Judgment.objects.filter(item__code=item_code, labeller=labeller).values("answers", "updated_at").first()
    return BlindItem(
        code=row["item__code"],
        campaign=campaign,
        panels=[Panel(kind=k, title=PANEL_TITLES[k], html=row[f"item__{k}_html"]) for k in kinds],
        status=row["status"],
        answers=judgment["answers"] if judgment else {},
        judged_at=judgment["updated_at"] if judgment else None,
        decomposition=Panel(kind="decomposition", title=DECOMPOSITION_TITLE, html=row["item__decomposition_html"])
        if row["item__decomposition_html"]
        else None,
        components=row["item__components"] or [],
    )


def labeller_progress(*, campaign: BlindCampaign, labeller_id: int) -> Progress:
    """Done, held and skipped by this labeller, and how many more items are open to them (2 queries).

    "Open to them" = items with a free slot, minus those they already hold, judged or skipped; a repeat is
    open only to the labellers who judged its original (an item's own overlap: gold items have more slots).
    """
    mine = Assignment.objects.filter(campaign_id=campaign.id, labeller_id=labeller_id).aggregate(
        done=Count("pk", filter=Q(status=Assignment.Status.DONE)),
        held=Count("pk", filter=Q(status=Assignment.Status.HELD)),
        skipped=Count("pk", filter=Q(status=Assignment.Status.SKIPPED)),
        mine_with_free_slot=Count("pk", filter=Q(item__slots_taken__lt=F("item__overlap"))),
    )
    judged_original = Judgment.objects.filter(item_id=OuterRef("repeat_of_id"), labeller_id=labeller_id)
    free = (
        Item.objects.filter(campaign_id=campaign.id, slots_taken__lt=F("overlap"))
        .filter(~Q(kind=Item.Kind.REPEAT) | Exists(judged_original))
        .count()
    )
    return Progress(
        available=free - mine.pop("mine_with_free_slot"),
        **mine,
    )


def own_judgments(*, campaign_id: int, labeller, limit: int = 500) -> list[dict]:
    """The labeller's own judgments in a campaign, newest first, keyed by item code only."""
    return list(
        Judgment.objects.filter(campaign_id=campaign_id, labeller=labeller)
        .order_by("-updated_at", "-id")
        .values("item__code", *ANSWER_FIELDS)[:limit]
    )


def probe_target(*, item_code: str, labeller) -> tuple[int, int, int] | None:
    """(sae id, feature index, domain corpus id) behind an item assigned to this labeller in a campaign that offers
    the live probe; None otherwise. Server side only: the labeller's browser never receives these."""
    row = (
        Assignment.objects.filter(item__code=item_code, labeller=labeller, campaign__labellers=labeller)
        .exclude(campaign__status=Campaign.Status.DRAFT)
        .values("item__source__sae_id", "item__feature_index", "campaign__domain_corpus_id", "campaign__panel_extras")
        .first()
    )
    if row is None or "probe" not in (row["campaign__panel_extras"] or []):
        return None
    return row["item__source__sae_id"], row["item__feature_index"], row["campaign__domain_corpus_id"]


@dataclass(frozen=True)
class OwnSkip:
    """A skip by this labeller, by item code only."""

    code: str
    reason: str
    campaign_id: int
    undo_until: datetime | None  # None once it can no longer be undone


def own_skip(*, labeller, item_code: str | None = None, campaign_id: int | None = None) -> OwnSkip | None:
    """The labeller's skip of `item_code`, or their latest skip in `campaign_id` that can still be undone."""
    rows = Assignment.objects.filter(labeller=labeller, status=Assignment.Status.SKIPPED, campaign__labellers=labeller)
    if item_code is not None:
        rows = rows.filter(item__code=item_code)
    else:
        since = timezone.now() - timedelta(seconds=Assignment.SKIP_UNDO_S)
        rows = rows.filter(campaign_id=campaign_id, skipped_at__gt=since)
    skip = rows.select_related("item").order_by("-skipped_at").first()
    if skip is None:
        return None
    return OwnSkip(
        code=skip.item.code, reason=skip.skip_reason, campaign_id=skip.campaign_id, undo_until=skip.skip_undo_until()
    )
