"""Campaign life cycle: create -> (preparing: dashboards build) -> open -> closed <-> open."""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone

from labelsite import questions as schema
from labelsite.models import MAX_REPEAT_SHARE, PANEL_EXTRAS, Assignment, Campaign, CampaignSAE, Item
from labelsite.questions import DEFAULT_GROUPS, QuestionError, expected_clean, questions_validate, rubric_validate
from labelsite.services import LabelConflict, LabelError, LabelNotFound
from labelsite.services.sampling import log10_frequencies, matched_sample, sampling_report

if TYPE_CHECKING:
    from labelsite.services.panels import ItemRef

OPEN_JOB_KIND = "open_campaign"
PANEL_BATCH = 200  # panels rendered and written per UPDATE
Progress = Callable[..., None]  # JobContext.progress(fraction, message)


@dataclass(frozen=True)
class SourceSpec:
    sae_id: int
    n_features: int = 100


def rubric_parse(text: str) -> list[dict]:
    """Parse the admin form's rubric: one level per line, "score: label" (or "score - label")."""
    levels = []
    for line in text.splitlines():
        if not line.strip():
            continue
        for sep in (":", "—", " - ", "="):
            if sep in line:
                score, label = line.split(sep, 1)
                break
        else:
            raise LabelError(f'Rubric line "{line.strip()}" should look like "2: related to the subject".')
        levels.append({"score": score.strip(), "label": label.strip()})
    try:
        return rubric_validate(levels)
    except QuestionError as exc:
        raise LabelError(str(exc)) from None


def rubric_format(rubric: Sequence[dict]) -> str:
    return "\n".join(f"{level['score']}: {level['label']}" for level in rubric)


@dataclass(frozen=True)
class GoldSpec:
    """A gold item an admin declares: a feature of one of the campaign's SAEs and the answers they expect."""

    sae_id: int
    feature_index: int
    expected: dict


GOLD_EXAMPLE = "my-sae 12: domain_score=3, nice=yes"
_GOLD_LINE = re.compile(r"^(?P<sae>.+?)\s+#?(?P<index>\d+)\s*:\s*(?P<answers>.*)$")


def gold_parse(text: str, *, sae_ids: dict[str, int]) -> list[GoldSpec]:
    """Parse the campaign form's gold items: one per line, "SAE name, feature number: question=answer, ..."
    (`sae_ids`: the chosen SAEs by name). The answers themselves are checked by `gold_clean`."""
    gold = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _GOLD_LINE.match(line.strip())
        if match is None:
            raise LabelError(f'Gold line {number} "{line.strip()}" should look like "{GOLD_EXAMPLE}".')
        name = match["sae"].strip()
        if name not in sae_ids:
            chosen = ", ".join(sorted(sae_ids)) or "none yet"
            raise LabelError(f'Gold line {number}: "{name}" is not one of the chosen SAEs ({chosen}).')
        expected = {}
        for pair in filter(str.strip, match["answers"].split(",")):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise LabelError(
                    f'Gold line {number}: "{pair.strip()}" should be question=answer, e.g. domain_score=3.'
                )
            expected[key.strip()] = value.strip()
        if not expected:
            raise LabelError(f"Gold line {number}: give the expected answers after the colon, e.g. {GOLD_EXAMPLE}.")
        gold.append(GoldSpec(sae_id=sae_ids[name], feature_index=int(match["index"]), expected=expected))
    return gold


def gold_clean(*, gold: Iterable[GoldSpec], questions: list[dict], saes: dict) -> list[dict]:
    """The gold items to store ([{"sae_id", "feature_index", "expected"}]), checked against the campaign's
    SAEs (`saes`: {id: SAE}, the chosen ones) and questions (validated); LabelError names the item and what to fix."""
    out, seen = [], set()
    for n, spec in enumerate(gold, start=1):
        sae = saes.get(spec.sae_id)
        if sae is None:
            raise LabelError(f"Gold item {n}: SAE {spec.sae_id} is not one of this campaign's SAEs.")
        where = f'Gold item {n} ("{sae.name}" feature {spec.feature_index})'
        if not 0 <= spec.feature_index < sae.d_sae:
            raise LabelError(f"{where}: the SAE has features 0 to {sae.d_sae - 1}.")
        if (spec.sae_id, spec.feature_index) in seen:
            raise LabelError(f"{where} is given twice; give each gold feature once.")
        seen.add((spec.sae_id, spec.feature_index))
        try:
            expected = expected_clean(questions, spec.expected)
        except QuestionError as exc:
            raise LabelError(f"{where}: {exc}") from None
        out.append({"sae_id": spec.sae_id, "feature_index": spec.feature_index, "expected": expected})
    return out


def campaign_create(
    *,
    name: str,
    domain_corpus_id: int,
    general_corpus_id: int,
    sources: Iterable[SourceSpec],
    labeller_ids: Iterable[int],
    guidelines: str = "",
    rubric: list[dict] | None = None,
    questions: list | None = None,
    min_frequency: float | None = None,
    seed: int = 0,
    panel_order: str = Campaign.PanelOrder.DOMAIN_FIRST,
    overlap: int = 1,
    hide_mapping_until_closed: bool = False,
    lease_seconds: int = 30 * 60,
    max_skips: int | None = None,
    sampling: str = Campaign.Sampling.RANDOM,
    match_general: bool = False,
    panel_extras: Iterable[str] = (),
    repeat_share: float = 0.0,
    gold: Iterable[GoldSpec] = (),
    judge_only_features: int = 0,
    ask_source_guess: bool = True,
    created_by=None,
) -> Campaign:
    """Record a draft campaign after checking everything an admin could get wrong.

    `questions` is a list of question objects (labelsite.questions; names of the default groups are
    accepted too); None asks the study's default questions. `rubric` is given to score questions that
    bring none. Quality control: `repeat_share` of each labeller's items are repeats of items they judged
    (0 to MAX_REPEAT_SHARE); `gold` items have expected answers (`gold_clean`). Both are sampled with the
    items when the campaign opens and left out of the study's breakdowns. `judge_only_features` per SAE are
    drawn at random besides the labellers' for the LLM judge alone (prediction-powered results). With
    `ask_source_guess` (and two sources or more) labellers are also asked, optionally, which source they think
    each feature came from (`questions.guess_question`: neutral letters or "don't know"), for the blinding
    indices of the results.
    """
    from compute.models import SAE, Corpus

    name = name.strip()
    problems: list[str] = []  # every problem at once, not one per submit
    if not name:
        problems.append("The campaign needs a name.")
    if Campaign.objects.filter(name=name).exists():
        problems.append(f'A campaign named "{name}" already exists.')
    corpora = Corpus.objects.in_bulk([domain_corpus_id, general_corpus_id])
    domain, general = corpora.get(domain_corpus_id), corpora.get(general_corpus_id)
    if domain is None or general is None:
        problems.append("Choose an existing domain corpus and general corpus.")
    else:
        if domain.kind != Corpus.Kind.DOMAIN:
            problems.append(
                f'"{domain}" is a {domain.get_kind_display()} corpus; the domain panel needs a domain corpus.'
            )
        if general.kind != Corpus.Kind.GENERAL:
            problems.append(f'"{general}" is a {general.get_kind_display()} corpus; the general panel needs web text.')
    sources = list(sources)
    if not sources:
        problems.append("Choose at least one SAE to sample features from.")
    if len({s.sae_id for s in sources}) != len(sources):
        problems.append("Each SAE can be chosen once.")
    saes = SAE.objects.in_bulk([s.sae_id for s in sources])
    for spec in sources:
        sae = saes.get(spec.sae_id)
        if sae is None:
            problems.append(f"SAE {spec.sae_id} does not exist.")
            continue
        if sae.status != SAE.Status.READY:
            problems.append(f'SAE "{sae}" is {sae.get_status_display().lower()}, not ready.')
        if not 1 <= spec.n_features <= sae.d_sae:
            problems.append(f'SAE "{sae}" has {sae.d_sae} features; sample between 1 and {sae.d_sae}.')
    labeller_ids = sorted(set(labeller_ids))
    users = get_user_model().objects.filter(pk__in=labeller_ids, is_active=True)
    if len(users) != len(labeller_ids):
        problems.append("Some chosen labellers do not exist or are inactive.")
    if overlap < 1:
        problems.append("Overlap k must be at least 1.")
    if labeller_ids and overlap > len(labeller_ids):
        problems.append(f"Overlap k = {overlap} needs at least {overlap} labellers; {len(labeller_ids)} chosen.")
    if min_frequency is not None and not 0.0 <= min_frequency <= 1.0:
        problems.append("The minimum firing frequency is a fraction of tokens, between 0 and 1.")
    try:
        questions = questions_validate(list(DEFAULT_GROUPS if questions is None else questions), rubric=rubric)
        if ask_source_guess and len(sources) >= 2 and all(q["key"] != schema.GUESS_KEY for q in questions):
            questions = questions_validate([*questions, schema.guess_question(len(sources))])
    except QuestionError as exc:
        problems.append(str(exc))
        questions = None
    if lease_seconds < 60:
        problems.append("A lease must last at least 60 seconds.")
    if max_skips is not None and max_skips < 0:
        problems.append("The skip limit is a number of items, 0 or more (empty: no limit).")
    if sampling not in Campaign.Sampling.values:
        problems.append(f"Sampling is one of {Campaign.Sampling.values}.")
    panel_extras = sorted(set(panel_extras))
    if set(panel_extras) - set(PANEL_EXTRAS):
        problems.append(
            f"Unknown panel extras {sorted(set(panel_extras) - set(PANEL_EXTRAS))}; choose from {sorted(PANEL_EXTRAS)}."
        )
    if not 0.0 <= repeat_share <= MAX_REPEAT_SHARE:
        problems.append(
            f"The share of repeated items is between 0 and {MAX_REPEAT_SHARE} (0.1: one item in ten is a repeat)."
        )
    if repeat_share and questions is not None and not schema.checkable_questions(questions):
        problems.append(
            "Repeated items are compared on score, yes/no or choice answers; this campaign asks none of those."
        )
    if judge_only_features < 0:
        problems.append("Judge-only features are a number per SAE, 0 or more.")
    if judge_only_features and sampling != Campaign.Sampling.RANDOM:
        problems.append(
            "Judge-only features need random sampling: prediction-powered results assume the labellers' features "
            "are a random share of all the judge scored."
        )
    if problems:
        raise LabelError(" ".join(problems))
    gold = gold_clean(gold=gold, questions=questions, saes={s.sae_id: saes[s.sae_id] for s in sources})
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name,
            guidelines=guidelines,
            questions=questions,
            domain_corpus=domain,
            general_corpus=general,
            min_frequency=min_frequency,
            seed=seed,
            panel_order=panel_order,
            overlap=overlap,
            hide_mapping_until_closed=hide_mapping_until_closed,
            lease_seconds=lease_seconds,
            max_skips=max_skips,
            sampling=sampling,
            match_general=match_general,
            panel_extras=panel_extras,
            repeat_share=repeat_share,
            gold=gold,
            judge_only_features=judge_only_features,
            created_by=created_by,
        )
        CampaignSAE.objects.bulk_create(
            [CampaignSAE(campaign=campaign, sae_id=s.sae_id, n_features=s.n_features) for s in sources]
        )
        campaign.labellers.set(users)
    return campaign


def _dashboard_pairs(campaign: Campaign) -> list[tuple[int, int]]:
    """(sae_id, corpus_id) for every dashboard the campaign shows."""
    sae_ids = list(campaign.sources.values_list("sae_id", flat=True))
    return [(s, c) for s in sae_ids for c in (campaign.domain_corpus_id, campaign.general_corpus_id)]


def campaign_open_start(*, campaign_id: int, user=None, confirm_leak: bool = False):
    """Ask for a campaign to open: queue the job that opens it. Returns the job, or None when already open.

    Requests only record and queue (a double click finds the job already queued); the work (dashboard
    builds, sampling, rendering every panel) happens in the job, `run_campaign_open_job`.
    """
    from compute.jobs import job_create
    from compute.models import JobStatus

    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None:
            raise LabelNotFound("This campaign does not exist.")
        if campaign.status == Campaign.Status.OPEN:
            return None
        if campaign.status == Campaign.Status.CLOSED:
            raise LabelConflict("This campaign is closed; reopen it instead.")
        # A queued job has not looked yet and will see everything committed before it runs: reuse it. A running
        # one may have looked already (say, before the last dashboard build finished): queue another.
        params = {"campaign_id": campaign.pk, "confirm_leak": bool(confirm_leak)}
        job = campaign.build_jobs.filter(kind=OPEN_JOB_KIND, status=JobStatus.QUEUED, params=params).first()
        if job is None:
            job = job_create(kind=OPEN_JOB_KIND, params=params, created_by=user)
            campaign.build_jobs.add(job)
        if campaign.status == Campaign.Status.DRAFT:
            campaign.status = Campaign.Status.PREPARING
            campaign.save(update_fields=["status"])
    return job


def run_campaign_open_job(ctx) -> dict:
    """Job handler (kind OPEN_JOB_KIND): move the campaign on with `campaign_open`; safe to run again."""
    from compute.jobs import JobInputError

    campaign_id = ctx.params.get("campaign_id")
    if not isinstance(campaign_id, int) or not Campaign.objects.filter(pk=campaign_id).exists():
        raise JobInputError(f"Campaign {campaign_id!r} does not exist.")
    try:
        campaign = campaign_open(
            campaign_id=campaign_id,
            user=ctx.job.created_by,
            confirm_leak=bool(ctx.params.get("confirm_leak")),
            progress=ctx.progress,
        )
    except LabelError as exc:
        Campaign.objects.filter(pk=campaign_id).update(prepare_error=str(exc))
        raise JobInputError(str(exc)) from None
    return {"campaign_id": campaign_id, "status": campaign.status, "items": campaign.items.count()}


def campaign_open(
    *, campaign_id: int, user=None, confirm_leak: bool = False, progress: Progress | None = None
) -> Campaign:
    """Open a draft campaign, or move a preparing one on. Idempotent: call it again to advance.

    Missing dashboards are built by jobs first (the campaign waits in PREPARING); once every
    dashboard is ready the items are sampled, their panels rendered and the blinding audit run. The
    campaign opens unless the audit finds the source predictable from what labellers see: then it goes
    back to DRAFT with the audit's verdict as `prepare_error`, and opens only with `confirm_leak=True`.
    Runs in a job (`run_campaign_open_job`), never in a request.
    """
    from compute.models import JobStatus
    from compute.selectors.dashboards import dashboards_ready
    from compute.services.dashboards import dashboard_build

    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status == Campaign.Status.OPEN:
            return campaign
        if campaign.status == Campaign.Status.CLOSED:
            raise LabelConflict("This campaign is closed; reopen it instead.")
        missing = [(s, c) for s, c in _dashboard_pairs(campaign) if not dashboards_ready(sae_id=s, corpus_id=c)]
        if missing:
            jobs = [dashboard_build(sae_id=s, corpus_id=c, created_by=user) for s, c in missing]
            campaign.build_jobs.add(*jobs)
            failed = [j for j in jobs if j.status in (JobStatus.FAILED, JobStatus.CANCELLED)]
            campaign.prepare_error = (
                "Dashboard job(s) " + ", ".join(str(j.pk) for j in failed) + " failed; retry them, then open again."
                if failed
                else ""
            )
            campaign.status = Campaign.Status.PREPARING
            campaign.save(update_fields=["status", "prepare_error"])
            return campaign
        items_sample(campaign=campaign)
        items_render_panels(campaign=campaign, progress=progress)
        audit = _audit_before_opening(campaign)
        if audit is not None and audit.leak and not confirm_leak:
            campaign.status = Campaign.Status.DRAFT
            campaign.prepare_error = audit.summary() + " Open it again and confirm to open it anyway."
            campaign.save(update_fields=["status", "prepare_error"])
            return campaign
        campaign.status = Campaign.Status.OPEN
        campaign.prepare_error = ""
        campaign.opened_at = campaign.opened_at or timezone.now()
        campaign.save(update_fields=["status", "prepare_error", "opened_at"])
    return campaign


def _audit_before_opening(campaign: Campaign):
    """The blinding audit of the rendered items; None when there is nothing to compare (one source, too few items)."""
    from labelsite.services.audit import campaign_audit

    if campaign.sources.count() < 2:
        return None
    try:
        result = campaign_audit(campaign_id=campaign.pk)
    except LabelError:
        return None
    campaign.refresh_from_db(fields=["audit"])
    return result


def campaign_audit_run(*, campaign_id: int):
    """Run the blinding audit now. A campaign not yet open whose dashboards are all built gets its items
    sampled and rendered first (without opening), so admins can see the audit before they open it."""
    from compute.selectors.dashboards import dashboards_ready
    from labelsite.services.audit import campaign_audit

    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not campaign.items.exists():
            if not all(dashboards_ready(sae_id=s, corpus_id=c) for s, c in _dashboard_pairs(campaign)):
                raise LabelConflict(
                    "The audit needs the rendered panels: open the campaign to build its dashboards first."
                )
            items_sample(campaign=campaign)
        items_render_panels(campaign=campaign)
    return campaign_audit(campaign_id=campaign_id)


def items_sample(*, campaign: Campaign) -> int:
    """Create the campaign's items once: `n_features` seeded features per SAE, random or matched.

    Features firing less often than `min_frequency` on the domain corpus are never drawn. Random sampling
    draws from each SAE independently; matched sampling (labelsite.services.sampling) stratifies on log
    firing frequency on D (and on general text with `match_general`), so every SAE contributes the same
    distribution; `campaign.sampling_report` records how well that worked. The draw depends only on (seed,
    SAE), so the same settings give the same features. Items are inserted in a shuffled order so that even
    row ids do not group by source.
    """
    from compute.selectors.dashboards import feature_frequencies

    if campaign.items.exists():
        return 0
    sources = list(campaign.sources.select_related("sae"))
    freqs = {s.pk: feature_frequencies(sae_id=s.sae_id, corpus_id=campaign.domain_corpus_id) for s in sources}
    matched = campaign.sampling == Campaign.Sampling.MATCHED
    if matched or campaign.min_frequency is not None:
        for source in sources:
            if freqs[source.pk] is None:
                raise LabelError(f'No firing frequencies for "{source.sae}" on the domain corpus yet.')
    eligible: dict[int, list[int]] = {}
    for source in sources:
        floor = campaign.min_frequency if campaign.min_frequency is not None else 0.0
        gold = {g["feature_index"] for g in campaign.gold if g["sae_id"] == source.sae_id}  # never also regular
        if freqs[source.pk] is None:
            eligible[source.pk] = [i for i in range(source.sae.d_sae) if i not in gold]
        else:  # matched sampling needs a log frequency: features that never fire on D are left out
            eligible[source.pk] = [
                i for i, f in enumerate(freqs[source.pk]) if f >= floor and (f > 0 or not matched) and i not in gold
            ]
        if not matched and len(eligible[source.pk]) < source.n_features:
            raise LabelError(
                f'"{source.sae}" has only {len(eligible[source.pk])} features firing at least {campaign.min_frequency} '
                f"of the time; ask for at most that many or lower the minimum frequency."
            )
    chosen, strata = (
        _draw(campaign, sources, freqs, eligible) if matched else (_random_draw(campaign, sources, eligible), None)
    )
    if all(freqs[s.pk] is not None for s in sources):
        log_freq = {s.pk: log10_frequencies(freqs[s.pk], floor=-12.0) for s in sources}
        campaign.sampling_report = sampling_report(
            sampling=campaign.sampling,
            requested={s.pk: s.n_features for s in sources},
            chosen=chosen,
            log_freq=log_freq,
            strata=strata,
        )
        Campaign.objects.filter(pk=campaign.pk).update(sampling_report=campaign.sampling_report)
    if not any(chosen.values()):
        raise LabelError("Matched sampling found no frequency range that every SAE covers; use random sampling.")
    items = [
        Item(campaign=campaign, source_id=source_pk, feature_index=i, overlap=campaign.overlap)
        for source_pk, indices in chosen.items()
        for i in indices
    ]
    items += [
        Item(campaign=campaign, source_id=source_pk, feature_index=i, overlap=0, kind=Item.Kind.JUDGE)
        for source_pk, indices in _judge_only_draw(campaign, sources, eligible, chosen).items()
        for i in indices
    ]
    random.Random(f"items:{campaign.seed}").shuffle(items)
    Item.objects.bulk_create(items, batch_size=1000)
    return len(items) + _quality_items(campaign, sources)


def _quality_items(campaign: Campaign, sources) -> int:
    """Create the campaign's gold items and repeats (after its regular items); how many.

    Every labeller gets every gold item (its overlap is the number of labellers, at least k). Repeats: a seeded
    choice of regular items, round(n * share / (1 - share)) of n, so that about `repeat_share` of what each
    labeller judges are repeats; each is the same feature again (same source and index; its panels are copied
    from the original once rendered) under a new code, served only to labellers who judged the original.
    """
    source_of = {s.sae_id: s.pk for s in sources}
    gold = [
        Item(
            campaign=campaign,
            source_id=source_of[g["sae_id"]],
            feature_index=g["feature_index"],
            kind=Item.Kind.GOLD,
            expected_answers=g["expected"],
            overlap=max(campaign.overlap, campaign.labellers.count()),
        )
        for g in campaign.gold
    ]
    regular = list(
        campaign.items.filter(kind=Item.Kind.REGULAR).order_by("pk").values_list("pk", "source_id", "feature_index")
    )
    share = campaign.repeat_share
    n_repeats = min(len(regular), round(len(regular) * share / (1 - share))) if share else 0
    repeats = [
        Item(
            campaign=campaign,
            source_id=source_id,
            feature_index=feature_index,
            kind=Item.Kind.REPEAT,
            repeat_of_id=pk,
            overlap=campaign.overlap,
        )
        for pk, source_id, feature_index in random.Random(f"repeats:{campaign.seed}").sample(regular, n_repeats)
    ]
    created = Item.objects.bulk_create([*gold, *repeats], batch_size=1000)
    return len(created)


def _random_draw(campaign: Campaign, sources, eligible: dict[int, list[int]]) -> dict[int, list[int]]:
    return {
        s.pk: sorted(random.Random(f"{campaign.seed}:{s.sae_id}").sample(eligible[s.pk], s.n_features)) for s in sources
    }


def _judge_only_draw(campaign: Campaign, sources, eligible: dict, chosen: dict) -> dict[int, list[int]]:
    """`judge_only_features` more per SAE, at random from the eligible features not chosen for labellers: the
    labellers' features are then a random share of everything the judge scores."""
    wanted = campaign.judge_only_features
    if not wanted:
        return {}
    out = {}
    for s in sources:
        taken = set(chosen[s.pk])
        rest = [i for i in eligible[s.pk] if i not in taken]
        if len(rest) < wanted:
            raise LabelError(
                f'"{s.sae}" has {len(rest)} eligible features besides the labellers\' {len(taken)}; ask for at most '
                f"{len(rest)} judge-only features."
            )
        out[s.pk] = sorted(random.Random(f"judge:{campaign.seed}:{s.sae_id}").sample(rest, wanted))
    return out


def _draw(campaign: Campaign, sources, freqs: dict, eligible: dict[int, list[int]]):
    """Matched draw: coordinates are log10 frequencies on D (and on general text with `match_general`)."""
    from compute.selectors.dashboards import feature_frequencies

    general = {}
    if campaign.match_general:
        for s in sources:
            general[s.pk] = feature_frequencies(sae_id=s.sae_id, corpus_id=campaign.general_corpus_id)
            if general[s.pk] is None:
                raise LabelError(f'No firing frequencies for "{s.sae}" on the general corpus yet.')
        positive = [f for g in general.values() for f in g if f > 0]
        general_floor = math.log10(min(positive)) - 0.5 if positive else -12.0
    empty = [str(s.sae) for s in sources if not eligible[s.pk]]
    if empty:
        raise LabelError(f"Matched sampling needs features that fire on D; none in {', '.join(empty)}.")
    coordinates = {}
    for s in sources:
        d = log10_frequencies(freqs[s.pk], floor=-12.0)
        if campaign.match_general:
            g = log10_frequencies(general[s.pk], floor=general_floor)
            coordinates[s.pk] = {i: (d[i], g[i]) for i in eligible[s.pk]}
        else:
            coordinates[s.pk] = {i: (d[i],) for i in eligible[s.pk]}
    n = min(s.n_features for s in sources)
    sample = matched_sample(coordinates=coordinates, n_per_source=n, seed=f"{campaign.seed}:matched")
    return sample.chosen, sample.strata


PANEL_FIELDS = (("domain_html", "domain"), ("general_html", "general"))  # an item's panel fields and their kinds


def panel_corpus(campaign: Campaign, kind: str) -> int:
    return campaign.domain_corpus_id if kind == "domain" else campaign.general_corpus_id


def panel_work(*, campaign: Campaign, only_missing: bool) -> dict[tuple[str, int], dict[int, tuple[int, ItemRef]]]:
    """The campaign's panels to draw, grouped by (panel field, SAE): {feature index: (item id, ItemRef)}.

    Repeats are left out (they are copies of their originals); with `only_missing`, panels already drawn too.
    """
    from labelsite.services.panels import ItemRef

    todo: dict[tuple[str, int], dict[int, tuple[int, ItemRef]]] = defaultdict(dict)
    for field, _ in PANEL_FIELDS:
        items = campaign.items.exclude(kind=Item.Kind.REPEAT)
        if only_missing:
            items = items.filter(**{field: ""})
        rows = items.values_list("pk", "code", "source_id", "source__sae_id", "feature_index")
        for pk, code, source_id, sae_id, feature_index in rows:
            todo[(field, sae_id)][feature_index] = (
                pk,
                ItemRef(code=code, source_id=source_id, sae_id=sae_id, feature_index=feature_index),
            )
    return todo


def items_render_panels(*, campaign: Campaign, progress: Progress | None = None) -> int:
    """Cache each item's two blind panels on its row (the labelling page then reads one row).

    What a panel shows is chosen per campaign (labelsite.services.panels): highlighted contexts drawn with
    the campaign's seed and the item's code, the same rows and sections for every item, extras only where an
    admin chose them. Dashboards are read in bulk: a constant number of queries per SAE and corpus, whatever
    the number of items; panels are written in batches, so memory holds one batch of HTML at a time.
    """
    from labelsite.services.panels import filler_pool, item_panel, panel_contents

    todo = panel_work(campaign=campaign, only_missing=True)
    total, done = sum(len(v) for v in todo.values()), 0
    kinds = dict(PANEL_FIELDS)
    fields = {field for field, _ in todo}
    fillers = {
        field: filler_pool(campaign=campaign, corpus_id=panel_corpus(campaign, kinds[field])) for field in fields
    }
    for (field, sae_id), items in todo.items():
        kind = kinds[field]
        batch: list[Item] = []
        for feature_index, content in panel_contents(
            sae_id=sae_id, corpus_id=panel_corpus(campaign, kind), features=items
        ):
            pk, ref = items[feature_index]
            html = item_panel(campaign=campaign, item=ref, kind=kind, content=content, filler=fillers[field])
            batch.append(Item(pk=pk, **{field: stored_html(html)}))
            if len(batch) >= PANEL_BATCH:
                Item.objects.bulk_update(batch, [field])
                done += len(batch)
                batch = []
                if progress is not None:
                    progress(done / total, f"Rendered {done} of {total} panels")
        Item.objects.bulk_update(batch, [field])
        done += len(batch)
    items_render_decompositions(campaign=campaign)
    items_copy_repeats(campaign=campaign)
    return done


def stored_html(html: str) -> str:
    """Panel HTML as stored: NUL (a byte-level token PostgreSQL text cannot hold) as a replacement mark."""
    return html.replace("\x00", "\ufffd")


REPEATED_FIELDS = ("domain_html", "general_html", "decomposition_html", "components")


def items_copy_repeats(*, campaign: Campaign) -> int:
    """Give each repeat exactly its original's panels (nothing on the page tells them apart but the code)."""
    original = Item.objects.filter(pk=OuterRef("repeat_of_id"))
    return campaign.items.filter(kind=Item.Kind.REPEAT).update(
        **{name: Subquery(original.values(name)[:1]) for name in REPEATED_FIELDS}
    )


def items_render_decompositions(*, campaign: Campaign) -> int:
    """Cache each item's blind sub-components panel (its feature's latest measured decomposition), when one of
    the campaign's questions asks about sub-components (per_component); the number of items that have one."""
    from compute.services.decomposition import decomposition_blind_panel

    if not any(q["type"] == schema.PER_COMPONENT for q in campaign.questions):
        return 0
    items = list(campaign.items.exclude(kind=Item.Kind.REPEAT).select_related("source").order_by("pk"))
    for item in items:
        html, names = decomposition_blind_panel(sae_id=item.source.sae_id, feature_index=item.feature_index)
        item.decomposition_html, item.components = stored_html(html), names
    Item.objects.bulk_update(items, ["decomposition_html", "components"], batch_size=500)
    return sum(bool(item.components) for item in items)


def campaign_close(*, campaign_id: int) -> Campaign:
    """Stop labelling: no more submissions or revisions; outstanding leases are released."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Campaign.Status.OPEN:
            raise LabelConflict(f"Only an open campaign can be closed; this one is {campaign.get_status_display()}.")
        _release(campaign, Assignment.objects.filter(campaign=campaign, status=Assignment.Status.HELD))
        campaign.status = Campaign.Status.CLOSED
        campaign.closed_at = timezone.now()
        campaign.save(update_fields=["status", "closed_at"])
    return campaign


def campaign_reopen(*, campaign_id: int) -> Campaign:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Campaign.Status.CLOSED:
            raise LabelConflict(f"Only a closed campaign can be reopened; this one is {campaign.get_status_display()}.")
        campaign.status = Campaign.Status.OPEN
        campaign.closed_at = None
        campaign.save(update_fields=["status", "closed_at"])
    return campaign


def campaign_reassign(*, campaign_id: int, from_user_id: int, to_user_id: int | None = None) -> int:
    """Hand a labeller's remaining work to someone else (or to the pool).

    The labeller's held leases are released so others can take those items; with `to_user_id` the
    new labeller joins and the old one leaves the campaign. Judgments already made are kept.
    Returns the number of leases released.
    """
    user_model = get_user_model()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not campaign.labellers.filter(pk=from_user_id).exists():
            raise LabelError("That user is not a labeller of this campaign.")
        released = _release(
            campaign, Assignment.objects.filter(campaign=campaign, labeller_id=from_user_id, status="held")
        )
        if to_user_id is not None:
            if to_user_id == from_user_id:
                raise LabelError("Choose a different labeller to reassign to.")
            new = user_model.objects.filter(pk=to_user_id, is_active=True).first()
            if new is None:
                raise LabelError("The new labeller does not exist or is inactive.")
            campaign.labellers.add(new)
            campaign.labellers.remove(from_user_id)
    return released


def _release(campaign: Campaign, held) -> int:
    """Expire held leases and give their slots back, locking items first (same order as every service)."""
    item_ids = sorted(set(held.values_list("item_id", flat=True)))
    if not item_ids:
        return 0
    list(Item.objects.select_for_update().filter(pk__in=item_ids).order_by("pk").values_list("pk", flat=True))
    released = held.filter(item_id__in=item_ids, status=Assignment.Status.HELD).update(status=Assignment.Status.EXPIRED)
    items_recount_slots(item_ids=item_ids)
    return released


def items_recount_slots(*, item_ids: Sequence[int]) -> None:
    """slots_taken := held + judged assignments (call with the items locked)."""
    counts = dict(
        Assignment.objects.filter(item_id__in=item_ids, status__in=[Assignment.Status.HELD, Assignment.Status.DONE])
        .values("item_id")
        .annotate(n=Count("id"))
        .values_list("item_id", "n")
    )
    for item_id in item_ids:
        Item.objects.filter(pk=item_id).exclude(slots_taken=counts.get(item_id, 0)).update(
            slots_taken=counts.get(item_id, 0)
        )
