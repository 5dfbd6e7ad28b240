"""Blinding audit, as trials check blinding: presentation guaranteed and audited, content reported.

A labeller must see what a feature does (which tokens fire, on what text): if one SAE's features are rarer and
narrower than another's, labellers see that, and it is the signal the study measures, not a leak. What must not
tell sources apart is everything the platform adds around that content. So the audit has three parts:

1. The swap test (`swap_test`): every item's panels are rendered again as if the item belonged to each other
   source (same contexts and activations) and must be byte-identical to the stored panels; any difference is a
   presentation leak, named by the part of the response that differed.
2. The presentation audit: observables of everything but the content (`panel_observables`, kind
   PRESENTATION: rows, sections, figures, markup bytes, style classes, numbers the platform adds, hover
   titles) and a cross-validated scikit-learn classifier (`audit_observables`): accuracy with a Wilson 95%
   interval against chance (the largest source's share), each observable's own AUC. It gates opening.
3. The content report: the same classifier on what the contexts show (kind CONTENT: how many tokens fire and
   how strongly, text length, digits in the texts), reported in plain words with the results; it informs.

`campaign_audit` runs all three on a campaign's items and stores the result on the campaign (shown on its
page, and before it opens); `python manage.py audit_blinding CAMPAIGN` prints it as JSON. A campaign opens
only when the swap test passes and the presentation audit's interval reaches down to chance.
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from django.db import transaction
from django.utils import timezone

from labelsite.models import Campaign, Item
from labelsite.services import LabelError

CV_FOLDS = 5
CONFIDENCE = 0.95
PANEL_KINDS = ("domain", "general")
PRESENTATION, CONTENT = "presentation", "content"
MAX_DIFFERENCES = 10  # swap-test differences kept (the first ones found)
SEPARATING_SHOWN = 4  # content observables named in the content report

_TAG = re.compile(r"<[^>]*>")
_CONTEXT = re.compile(r'<span class="ctx">(.*?)</span></li>', re.S)  # a context row's tokens: the content
_ALPHA = re.compile(r"background:\s*rgba\(\s*[\d.]+\s*,\s*[\d.]+\s*,\s*[\d.]+\s*,\s*([\d.]+)\s*\)")
_SHADE = re.compile(r'<span class="h(\d\d)">')  # a blind panel's shaded token (labelsite.services.panels.shade_class)
_TOKEN = re.compile(r'<span(?: class="(h\d\d|tok[^"]*)")?[^>]*>')  # a token span: bare, shaded or dashboard markup
_TITLE = re.compile(r'\btitle="([^"]*)"')
_CLASS = re.compile(r'class="([^"]*)"')
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?\s*([kMB%])?(?![\w])")
_SCALE = {"k": 1e3, "M": 1e6, "B": 1e9, "%": 0.01}

# Every observable of a panel: its kind and what it measures in plain words (for the content report).
OBSERVABLES: dict[str, tuple[str, str]] = {
    "rows": (PRESENTATION, "how many context rows a panel has"),
    "sections": (PRESENTATION, "how many sections a panel has"),
    "figures": (PRESENTATION, "charts, tables and lists"),
    "markup_bytes": (PRESENTATION, "the size of the markup around the texts"),
    "classes": (PRESENTATION, "how many style classes the markup uses"),
    "titles": (PRESENTATION, "hover titles"),
    "numbers_added": (PRESENTATION, "how many numbers the platform adds"),
    "largest_added_number_log10": (PRESENTATION, "the size of the numbers the platform adds"),
    "text_chars": (CONTENT, "how long the texts are"),
    "tokens": (CONTENT, "how many tokens the contexts have"),
    "highlighted_tokens": (CONTENT, "how many tokens fire"),
    "max_highlight": (CONTENT, "how strongly the strongest token is shaded"),
    "mean_highlight": (CONTENT, "how strongly the firing tokens are shaded"),
    "strong_highlights": (CONTENT, "how many tokens fire strongly"),
    "shades": (CONTENT, "how many different shades the tokens show"),
    "numbers_shown": (CONTENT, "digits in the texts"),
    "largest_number_log10": (CONTENT, "the size of the numbers in the texts"),
    "smallest_number_log10": (CONTENT, "the size of the numbers in the texts"),
}
PANEL_WORDS = {"domain": "on domain text", "general": "on general text", "decomposition": "in the sub-components"}


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
    """Observables of one rendered panel (regular expressions only: a few hundred microseconds a panel).

    The content is what the context rows show (each `<span class="ctx">`'s tokens, their shades, their text);
    everything else (the markup around them, headings, numbers and titles the platform adds) is presentation.
    A class-named observable `class.NAME` counts each style class of the presentation markup, so a class only
    one source's panels carry is seen by name.
    """
    contexts = _CONTEXT.findall(panel_html)
    frame = _CONTEXT.sub('<span class="ctx"></span></li>', panel_html)  # the panel without its content
    content = "".join(contexts)
    shades = _SHADE.findall(content)
    alphas = [float(a) for a in _ALPHA.findall(content)] + [int(a) / 100 for a in shades]
    titles = [html.unescape(t) for t in _TITLE.findall(frame)]
    texts = [html.unescape(_TAG.sub("", c)) for c in contexts]  # each row's text, its tokens joined
    text = "\n".join(texts)
    text_numbers = _numbers(text)
    added = _numbers(html.unescape(_TAG.sub(" ", frame))) + [n for t in titles for n in _numbers(t)]
    classes = [c for group in _CLASS.findall(frame) for c in group.split()]
    out = {
        "rows": float(frame.count("<li")),
        "sections": float(frame.count("<h3") + frame.count("<details")),
        "figures": float(frame.count("<svg") + frame.count("<table") + frame.count("<ol")),
        "markup_bytes": float(len(frame.encode())),
        "classes": float(len(set(classes))),
        "titles": float(len(titles)),
        "numbers_added": float(len(added)),
        "largest_added_number_log10": _log_abs(added, lambda v: max(v, key=abs)),
        "text_chars": float(sum(map(len, texts))),
        "tokens": float(len(_TOKEN.findall(content)) - content.count('class="ws"')),
        "highlighted_tokens": float(len(alphas)),
        "max_highlight": max(alphas, default=0.0),
        "mean_highlight": sum(alphas) / len(alphas) if alphas else 0.0,
        "strong_highlights": float(sum(a >= 0.5 for a in alphas)),
        "shades": float(len(set(alphas))),
        "numbers_shown": float(len(text_numbers)),
        "largest_number_log10": _log_abs(text_numbers, lambda v: max(v, key=abs)),
        "smallest_number_log10": _log_abs(text_numbers, lambda v: min(v, key=abs)),
    }
    for name in classes:
        out[f"class.{name}"] = out.get(f"class.{name}", 0.0) + 1.0
    return out


def observable_kind(name: str) -> str:
    """PRESENTATION or CONTENT for an item observable ("domain.rows", "general.class.ctx", "total.bytes")."""
    _, _, base = name.partition(".")
    if base.startswith("class.") or base not in OBSERVABLES:
        return PRESENTATION
    return OBSERVABLES[base][0]


def observable_words(name: str) -> str:
    """An observable in plain words: "how many tokens fire on domain text"."""
    panel, _, base = name.partition(".")
    what = f'the style class "{base[6:]}"' if base.startswith("class.") else OBSERVABLES.get(base, (None, base))[1]
    return f"{what} {PANEL_WORDS.get(panel, '')}".strip()


def item_observables(panels: Mapping[str, str]) -> dict[str, float]:
    """Observables of one item: each panel's, prefixed by its kind, plus the item's total markup bytes."""
    out: dict[str, float] = {}
    for kind, panel_html in panels.items():
        out.update({f"{kind}.{name}": value for name, value in panel_observables(panel_html).items()})
    out["total.markup_bytes"] = sum(v for k, v in out.items() if k.endswith(".markup_bytes"))
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


def _split(rows: Sequence[Mapping[str, float]], kind: str) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if observable_kind(k) == kind} for row in rows]


@dataclass(frozen=True)
class SwapResult:
    """The swap test: every item rendered as if it belonged to each other source, compared byte for byte."""

    passed: bool
    items: int  # items re-rendered
    renderings: int  # panels rendered and compared
    # the first MAX_DIFFERENCES: item code, part ("the domain panel"; "... as stored" when the stored bytes are not
    # the renderer's), as_source (the source number it was rendered as; 0: its own), detail (what differed)
    differences: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        if self.passed:
            return (
                f"Swap test passed: each of {self.items} items rendered as if it came from each other source "
                f"gives byte-identical panels ({self.renderings} renderings)."
            )
        first = self.differences[0]
        if not first["as_source"]:
            return (
                f"Swap test failed: {first['part']} differs from its rendering ({first['detail']}; item "
                f"{first['item']}): render the panels again."
            )
        return (
            f"Swap test failed: {first['part']} changes with the source ({first['detail']}; item {first['item']} "
            f"rendered as source {first['as_source']})."
        )


def _difference(expected: str, got: str) -> str:
    """Where two renderings of a panel differ, in words: a count that changed, a style class, or the first byte."""
    a, b = panel_observables(expected), panel_observables(got)
    for name, words in (("rows", "context rows"), ("sections", "sections"), ("numbers_added", "numbers added")):
        if a[name] != b[name]:
            return f"{words}: {a[name]:.0f} instead of {b[name]:.0f}"
    classes = sorted(k[6:] for k in set(a) ^ set(b) if k.startswith("class."))
    if classes:
        return "style class " + ", ".join(f'"{c}"' for c in classes)
    at = next((i for i, (x, y) in enumerate(zip(expected, got, strict=False)) if x != y), min(len(expected), len(got)))
    return f"from character {at}: {expected[max(0, at - 30) : at + 30]!r} instead of {got[max(0, at - 30) : at + 30]!r}"


def swap_test(*, campaign: Campaign) -> SwapResult:
    """Render every item's panels again as if it belonged to each other source, and compare with the stored bytes.

    The content (the feature's dashboard row on each corpus) stays the item's own; only who the item is changes:
    its source, its SAE and its feature index (another source's, as an item of that source would have). The
    rendering must also equal what is stored (what labellers receive). Rows are streamed per SAE and corpus and
    stored panels read a batch at a time, so memory holds one batch of HTML.
    """
    from labelsite.services.campaigns import PANEL_BATCH, PANEL_FIELDS, panel_corpus, panel_work, stored_html
    from labelsite.services.panels import filler_pool, item_panel, panel_contents

    sources = list(campaign.sources.order_by("pk").values_list("pk", "sae_id"))
    number = {pk: n for n, (pk, _) in enumerate(sources, start=1)}
    kinds = dict(PANEL_FIELDS)
    todo = panel_work(campaign=campaign, only_missing=False)
    # an item of another source has that source's feature index: any one of its items' will do
    some_feature = {ref.source_id: ref.feature_index for group in todo.values() for _, ref in group.values()}
    fillers = {
        panel: filler_pool(campaign=campaign, corpus_id=panel_corpus(campaign, kinds[panel]))
        for panel in {panel for panel, _ in todo}
    }
    differences: list[dict] = []
    renderings, items = 0, set()
    for (panel, sae_id), group in todo.items():
        kind = kinds[panel]
        contents = panel_contents(sae_id=sae_id, corpus_id=panel_corpus(campaign, kind), features=group)
        while batch := [next_ for _, next_ in zip(range(PANEL_BATCH), contents, strict=False)]:
            stored = dict(Item.objects.filter(pk__in=[group[f][0] for f, _ in batch]).values_list("pk", panel))
            for feature_index, content in batch:
                pk, ref = group[feature_index]
                items.add(pk)
                own = stored_html(
                    item_panel(campaign=campaign, item=ref, kind=kind, content=content, filler=fillers[panel])
                )
                found = [] if own == stored[pk] else [("as stored", 0, _difference(stored[pk], own))]
                for source_pk, as_sae in sources:
                    if source_pk == ref.source_id:
                        continue
                    swapped = replace(ref, source_id=source_pk, sae_id=as_sae, feature_index=some_feature[source_pk])
                    got = stored_html(
                        item_panel(campaign=campaign, item=swapped, kind=kind, content=content, filler=fillers[panel])
                    )
                    if got != own:
                        found.append(("", number[source_pk], _difference(own, got)))
                renderings += len(sources)
                differences += [
                    {"item": ref.code, "part": f"the {kind} panel {where}".strip(), "as_source": n, "detail": detail}
                    for where, n, detail in found
                ][: MAX_DIFFERENCES - len(differences)]
    return SwapResult(passed=not differences, items=len(items), renderings=renderings, differences=differences)


@dataclass(frozen=True)
class BlindingAudit:
    """A campaign's audit: the swap test and the presentation audit gate; the content report informs."""

    presentation: AuditResult
    content: AuditResult
    swap: SwapResult
    seconds: float = 0.0

    @property
    def leak(self) -> bool:
        """A presentation leak: the swap test failed, or the presentation observables predict the source."""
        return not self.swap.passed or self.presentation.leak

    @property
    def verdict(self) -> str:
        return "fail" if self.leak else "pass"

    def separating(self) -> list[dict]:
        """The content observables that separate the sources most (AUC above 0.6), in plain words; none when the
        content as a whole does not tell the sources apart (one observable's AUC alone can pass 0.6 by chance)."""
        if not self.content.leak:
            return []
        return [
            {**o, "words": observable_words(o["observable"])}
            for o in self.content.observables[:SEPARATING_SHOWN]
            if o["auc"] > 0.6
        ]

    def content_summary(self) -> str:
        """The content report in plain words: what differs between the sources' features, as labellers see it."""
        c = self.content
        figures = f"{c.accuracy:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}], chance {c.chance:.2f}"
        if not c.leak:
            return f"Features from these sources look alike in what labellers see (source predicted {figures})."
        parts = ", ".join(f"{o['words']} (AUC {o['auc']:.2f})" for o in self.separating())
        return (
            f"Features from these sources differ in what labellers see: {parts} (source predicted {figures}). "
            "This is what labellers judge, not a leak. Matched sampling reduces it, at a cost: each SAE's sample "
            "is then less representative of that SAE."
        )

    def summary(self) -> str:
        p = self.presentation
        figures = f"{p.accuracy:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}], chance {p.chance:.2f}"
        if not self.swap.passed:
            return "Blinding leak in the presentation. " + self.swap.summary()
        if p.leak:
            mr = p.most_revealing
            return (
                f"Blinding leak in the presentation: the source is predictable from what the platform adds around "
                f"the content ({figures}, {p.n_items} items); most revealing: {observable_words(mr['observable'])} "
                f"({mr['observable']}, AUC {mr['auc']:.2f})."
            )
        return f"Presentation blind: {self.swap.summary()} Source predicted from the presentation {figures}."

    def as_dict(self) -> dict:
        """The stored and printed form: the presentation audit's figures at the top level (as before), then
        `presentation` (the gate) and `content` (the report), whose field names are stable."""
        p, c = self.presentation, self.content
        return {
            **asdict(p),
            "seconds": self.seconds,
            "leak": self.leak,
            "presentation": {
                "accuracy": p.accuracy,
                "interval": [p.ci_low, p.ci_high],
                "chance": p.chance,
                "p_value": p.p_value,
                "verdict": self.verdict,
                "swap_test": asdict(self.swap),
                "most_revealing": p.most_revealing,
                "observables": p.observables,
            },
            "content": {
                "accuracy": c.accuracy,
                "interval": [c.ci_low, c.ci_high],
                "chance": c.chance,
                "p_value": c.p_value,
                "separating": self.separating(),
                "summary": self.content_summary(),
                "observables": c.observables,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> BlindingAudit:
        def result(part: Mapping) -> AuditResult:
            low, high = part["interval"]
            observables = part["observables"]
            return AuditResult(
                accuracy=part["accuracy"],
                ci_low=low,
                ci_high=high,
                chance=part["chance"],
                n_items=data["n_items"],
                n_sources=data["n_sources"],
                p_value=part["p_value"],
                most_revealing=observables[0] if observables else {},
                observables=observables,
            )

        return cls(
            presentation=result(data["presentation"]),
            content=result(data["content"]),
            swap=SwapResult(**data["presentation"]["swap_test"]),
            seconds=data.get("seconds", 0.0),
        )


def campaign_audit(*, campaign_id: int) -> BlindingAudit:
    """Swap-test and audit the campaign's rendered items (what each labeller's browser receives); store the result."""
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
    result = BlindingAudit(
        presentation=audit_observables(_split(rows, PRESENTATION), labels, seed=campaign.seed),
        content=audit_observables(_split(rows, CONTENT), labels, seed=campaign.seed),
        swap=swap_test(campaign=campaign),
    )
    result = BlindingAudit(**{**result.__dict__, "seconds": round(time.perf_counter() - started, 3)})
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(audit={**result.as_dict(), "at": timezone.now().isoformat()})
    return result


def stored_audit(campaign: Campaign) -> BlindingAudit | None:
    """The campaign's last audit, if any (as stored by `campaign_audit`); None for one stored before the swap test."""
    data = campaign.audit or {}
    return BlindingAudit.from_dict(data) if "presentation" in data else None
