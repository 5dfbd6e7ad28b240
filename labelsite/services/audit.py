"""Blinding audit: can the source of an item be predicted from what a labeller's browser receives?

Hiding identifiers is the easy half of blinding; what a panel shows (how many contexts, which numbers,
how many bytes) can give the source away just as well. The audit measures it the way a trial checks that
its arms look alike:

1. `panel_observables` turns what the browser receives for an item (its rendered panels) into simple
   observables: bytes, contexts, tokens, highlighted tokens, highlight strength, numbers shown (in text and
   in hover titles), sections, ... — pure string work, no Django.
2. `audit_observables` estimates with a cross-validated scikit-learn classifier how well the source is
   predicted from them: accuracy with a Wilson 95% interval against chance (the largest source's share),
   and each observable's own AUC, so a leak can be named.
3. `campaign_audit` runs it on a campaign's rendered items and stores the result on the campaign (shown on
   its page, and before it opens); `python manage.py audit_blinding CAMPAIGN` prints it as JSON.

An audit fails when the interval's lower end is above chance (the source is predictable at 95%).
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from django.db import transaction
from django.utils import timezone

from labelsite.models import Campaign, Item
from labelsite.services import LabelError

CV_FOLDS = 5
CONFIDENCE = 0.95
PANEL_KINDS = ("domain", "general")

_TAG = re.compile(r"<[^>]*>")
_ALPHA = re.compile(r"background:\s*rgba\(\s*[\d.]+\s*,\s*[\d.]+\s*,\s*[\d.]+\s*,\s*([\d.]+)\s*\)")
_SHADE = re.compile(r'<span class="h(\d\d)">')  # a blind panel's shaded token (labelsite.services.panels.shade_class)
_TITLE = re.compile(r'\btitle="([^"]*)"')
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?\s*([kMB%])?(?![\w])")
_SCALE = {"k": 1e3, "M": 1e6, "B": 1e9, "%": 0.01}


def _numbers(text: str) -> list[float]:
    out = []
    for match in _NUMBER.finditer(text):
        raw = match.group(0).rstrip("kMB% ").replace(",", "")
        try:
            value = float(raw)
        except ValueError:
            continue
        out.append(value * _SCALE.get(match.group(1) or "", 1.0))
    return out


def _log_abs(values: Sequence[float], pick) -> float:
    return math.log10(1e-9 + abs(pick(values))) if values else -10.0


def panel_observables(panel_html: str) -> dict[str, float]:
    """Observables of one rendered panel (regular expressions only: a few hundred microseconds a panel)."""
    shades = _SHADE.findall(panel_html)
    alphas = [float(a) for a in _ALPHA.findall(panel_html)] + [int(a) / 100 for a in shades]
    titles = [html.unescape(t) for t in _TITLE.findall(panel_html)]
    text = html.unescape(_TAG.sub(" ", panel_html))
    text_numbers = _numbers(text)
    title_numbers = [n for t in titles for n in _numbers(t)]
    return {
        "bytes": float(len(panel_html.encode())),
        "text_chars": float(len(text.strip())),
        "contexts": float(panel_html.count("<li")),
        # tokens: bare spans and shaded ones (blind panels), or class "tok" (dashboard markup)
        "tokens": float(panel_html.count("<span>") + panel_html.count('class="tok') + len(shades)),
        "highlighted_tokens": float(len(alphas)),
        "max_highlight": max(alphas, default=0.0),
        "mean_highlight": sum(alphas) / len(alphas) if alphas else 0.0,
        "strong_highlights": float(sum(a >= 0.5 for a in alphas)),
        "sections": float(panel_html.count("<h3") + panel_html.count("<details")),
        "tables_and_figures": float(panel_html.count("<svg") + panel_html.count("<table") + panel_html.count("<ol")),
        "titles": float(len(titles)),
        "numbers_in_titles": float(len(title_numbers)),
        "numbers_shown": float(len(text_numbers)),
        "largest_number_log10": _log_abs(text_numbers, lambda v: max(v, key=abs)),
        "smallest_number_log10": _log_abs(text_numbers, lambda v: min(v, key=abs)),
        "largest_title_number_log10": _log_abs(title_numbers, lambda v: max(v, key=abs)),
        "classes": float(len(set(re.findall(r'class="([^"]*)"', panel_html)))),
    }


def item_observables(panels: Mapping[str, str]) -> dict[str, float]:
    """Observables of one item: each panel's, prefixed by its kind, plus the item's total bytes."""
    out: dict[str, float] = {}
    for kind, panel_html in panels.items():
        out.update({f"{kind}.{name}": value for name, value in panel_observables(panel_html).items()})
    out["total.bytes"] = float(sum(len(h.encode()) for h in panels.values()))
    return out


@dataclass(frozen=True)
class AuditResult:
    accuracy: float
    ci_low: float
    ci_high: float
    chance: float
    n_items: int
    n_sources: int
    p_value: float
    most_revealing: dict  # {"observable": name, "auc": value}
    observables: list[dict] = field(default_factory=list)  # every observable with its AUC, most revealing first
    seconds: float = 0.0

    @property
    def leak(self) -> bool:
        """The source is predictable from what labellers see (95% interval entirely above chance)."""
        return self.ci_low > self.chance

    def as_dict(self) -> dict:
        return {**asdict(self), "leak": self.leak}

    def summary(self) -> str:
        figures = f"{self.accuracy:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}], chance {self.chance:.2f}"
        if self.leak:
            mr = self.most_revealing
            return (
                f"Blinding leak: the source is predictable from what labellers see ({figures}, "
                f"{self.n_items} items); most revealing: {mr['observable']} (AUC {mr['auc']:.2f})."
            )
        return f"Source predictable from what labellers see: {figures} ({self.n_items} items)."


def _aucs_revealing(x, labels, classes):
    """How well each observable (column of x) separates the sources: the largest pairwise AUC, folded to >= 0.5.

    AUC by the Mann-Whitney identity, AUC = (rank sum of b - n_b (n_b + 1) / 2) / (n_a n_b), with midranks for
    ties (scipy's rankdata), all columns at once.
    """
    import numpy as np
    from scipy.stats import rankdata

    best = np.full(x.shape[1], 0.5)
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            mask = (labels == a) | (labels == b)
            ranks = rankdata(x[mask], axis=0)  # [n_a + n_b, n_observables]
            is_b = labels[mask] == b
            n_b, n_a = int(is_b.sum()), int((~is_b).sum())
            auc = (ranks[is_b].sum(axis=0) - n_b * (n_b + 1) / 2) / (n_a * n_b)
            best = np.maximum(best, np.maximum(auc, 1.0 - auc))
    return best


def audit_observables(rows: Sequence[Mapping[str, float]], labels: Sequence[int], *, seed: int = 0) -> AuditResult:
    """Cross-validated predictability of `labels` (the source of each item) from its observables.

    A random forest (non-linear, scale-free, few assumptions) is trained and tested in stratified
    `CV_FOLDS`-fold cross-validation; every item is predicted once by a model that never saw it.
    """
    import numpy as np
    from scipy.stats import binomtest
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    started = time.perf_counter()
    names = sorted({name for row in rows for name in row})
    x = np.array([[row.get(name, 0.0) for name in names] for row in rows], dtype=np.float64)
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise LabelError("The blinding audit needs items from at least two sources.")
    folds = min(CV_FOLDS, int(counts.min()))
    if folds < 2:
        raise LabelError("The blinding audit needs at least two items from every source.")
    model = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    predicted = cross_val_predict(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    correct = int((predicted == y).sum())
    n = len(y)
    chance = float(counts.max() / n)
    test = binomtest(correct, n, p=chance, alternative="greater")
    ci = binomtest(correct, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    aucs = sorted(
        (
            {"observable": name, "auc": round(float(auc), 4)}
            for name, auc in zip(names, _aucs_revealing(x, y, classes), strict=True)
        ),
        key=lambda o: (-o["auc"], o["observable"]),
    )
    return AuditResult(
        accuracy=round(correct / n, 4),
        ci_low=round(float(ci.low), 4),
        ci_high=round(float(ci.high), 4),
        chance=round(chance, 4),
        n_items=n,
        n_sources=len(classes),
        p_value=float(f"{test.pvalue:.4g}"),
        most_revealing=aucs[0],
        observables=aucs,
        seconds=round(time.perf_counter() - started, 3),
    )


def campaign_audit(*, campaign_id: int) -> AuditResult:
    """Audit the campaign's rendered items (what each labeller's browser receives) and store the result."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise LabelError(f"No campaign {campaign_id}.")
    started = time.perf_counter()
    rows, labels = [], []
    # The sub-components panel is shown (and audited) when a question asks about sub-components; an item without
    # a measured decomposition shows none, and that absence is an observable too.
    kinds = (
        (*PANEL_KINDS, "decomposition")
        if any(q["type"] == "per_component" for q in campaign.questions)
        else PANEL_KINDS
    )
    fields = tuple(f"{kind}_html" for kind in kinds)
    # Repeats are left out: each is byte for byte its original's panels (audited as the original), and a copy
    # of an item in another fold would let the classifier recognise rather than predict. Gold items are panels
    # like any other and are audited with their source.
    items = (
        Item.objects.filter(campaign=campaign)
        .exclude(kind=Item.Kind.REPEAT)
        .order_by("pk")
        .values_list("source_id", *fields)
    )
    for source_id, *panels in items.iterator(chunk_size=500):
        if not all(panels[: len(PANEL_KINDS)]):
            raise LabelError("Some items have no rendered panels yet; the audit runs once the panels are rendered.")
        rows.append(item_observables(dict(zip(kinds, panels, strict=True))))
        labels.append(source_id)
    if not rows:
        raise LabelError("This campaign has no items yet; they are sampled once its dashboards are built.")
    result = audit_observables(rows, labels, seed=campaign.seed)
    result = AuditResult(**{**asdict(result), "seconds": round(time.perf_counter() - started, 3)})
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(audit={**result.as_dict(), "at": timezone.now().isoformat()})
    return result


def stored_audit(campaign: Campaign) -> AuditResult | None:
    """The campaign's last audit, if any (as stored by `campaign_audit`)."""
    data = {k: v for k, v in (campaign.audit or {}).items() if k not in ("leak", "at")}
    return AuditResult(**data) if data else None
