"""Bengali, CJK and emoji through a byte-level BPE tokenizer: every place that shows a stored dashboard's
text (admin dashboard, blind panel, autointerp prompt, JSON export) shows whole characters, never U+FFFD."""

from __future__ import annotations

import json
import random
import re
from html import unescape

import numpy as np
import pytest

from compute.ml.autointerp import AutoInterpConfig, contexts_from_dashboard, explainer_messages
from compute.ml.lm import LoadedModel
from compute.models import SAE, Corpus, DashboardSet
from compute.selectors.dashboard_exports import dashboard_export
from compute.selectors.dashboard_html import dashboard_context
from compute.services.dashboard_build import TokenStrings, pack_feature
from labelsite.services.panels import FillerPool, PanelContent, panel_html
from tests.ml_factories import trained_byte_level_tokenizer

TEXTS = ["আমি বাংলায় গান গাই।", "日本語のテキスト、東京。", "Emoji 😀👍🏽 and more 🎉"]


@pytest.fixture(scope="module")
def stored():
    """One packed dashboard row whose examples are the three texts, tokenized by a trained byte-level BPE."""
    tokenizer = trained_byte_level_tokenizer()
    loaded = LoadedModel(
        model=None, tokenizer=tokenizer, name="t", d_model=1, n_layers=1, special_token_ids=set(), hook_names=[], unembed=None
    )  # fmt: skip
    examples = []
    for seq, text in enumerate(TEXTS):
        ids = np.array(tokenizer.encode(text, add_special_tokens=False))
        values = np.linspace(0.5, 2.0, len(ids)).astype(np.float32)
        examples.append({"tokens": ids, "values": values, "center": len(ids) - 1, "value": float(values[-1]), "seq": seq, "pos": 40})  # fmt: skip
    # a vocabulary token holding part of a character, as an output-logit token
    partial = next(i for i in range(len(tokenizer)) if "\ufffd" in tokenizer.decode([i]))
    feature = {"index": 0, "n_tokens": 1000, "n_firing": 30, "frequency": 0.03, "max": 2.0, "mean": 1.0,
               "histogram": {"lo": 0.0, "hi": 2.0, "counts": [3, 2]}, "top": examples,
               "quantiles": [{"lo": 0.0, "hi": 2.0, "count": 30, "examples": examples[:1]}]}  # fmt: skip
    logits = {"pos": [[loaded.to_str_tokens([partial])[0], 1.5], ["ok", 1.0]], "neg": []}
    row = pack_feature(feature, TokenStrings(loaded.to_str_tokens), logits)
    corpus = Corpus(name="bn", kind=Corpus.Kind.DOMAIN)
    dset = DashboardSet(corpus=corpus, sae=SAE(name="s", hook_name="h", d_sae=4), config={"top_k": 3}, n_tokens=1000)
    return dset, row


def _visible_text(html: str) -> str:
    """What a reader sees of a token run: tags removed, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_admin_dashboard_shows_whole_characters(stored):
    dset, row = stored
    context = dashboard_context(dset=dset, row=row, blind=False)
    shown = [_visible_text(str(ex["html"])) for ex in context["top"]]
    assert shown == TEXTS
    assert all("\ufffd" not in s for s in shown)
    # the partial vocabulary token is written as its bytes, never as a replacement character
    token, _ = context["logits_pos"][0]
    assert re.search(r"\\x[89a-f][0-9a-f]", token) and "\ufffd" not in token


def test_highlighting_covers_the_whole_character(stored):
    dset, row = stored
    html = str(dashboard_context(dset=dset, row=row, blind=False)["top"][2]["html"])
    # the outlined (max) span is the last piece: the whole final emoji (with the space its first token
    # carries), not its last byte
    (outlined,) = re.findall(r'<span class="tok max"[^>]*>(.*?)</span>', html)
    assert _visible_text(outlined) == " 🎉"


def test_blind_panel_shows_whole_characters(stored):
    _, row = stored
    html = panel_html(
        content=PanelContent(data=row.data, n_firing=30, n_tokens=1000, max_activation=2.0), extras=["logits"],
        filler=FillerPool(), rng=random.Random(0),
    )  # fmt: skip
    assert "\ufffd" not in html
    rows = [_visible_text(li) for li in re.findall(r'<span class="ctx">(.*?)</span></li>', html)]
    assert set(rows) == set(TEXTS)


def test_autointerp_prompt_quotes_whole_characters(stored):
    _, row = stored
    top, bins = contexts_from_dashboard(row.data)
    assert ["".join(c.tokens) for c in top] == TEXTS
    # the window still spans its model tokens in the corpus (held-out windows must not overlap it)
    assert top[0].span()[2] - top[0].span()[1] == len(row.data["top"][0]["t"])
    messages = explainer_messages(top, [], AutoInterpConfig())
    prompt = messages[-1]["content"]
    assert "\ufffd" not in prompt and "গান" in prompt and "東京" in prompt and "🎉" in prompt


def test_export_lists_whole_characters_and_survives_strict_json(stored):
    dset, row = stored
    export = dashboard_export(dset=dset, row=row)
    text = json.dumps(export, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogates left
    assert ["".join(ex["tokens"]) for ex in export["top_examples"]] == TEXTS
    for ex in export["top_examples"]:
        assert len(ex["tokens"]) == len(ex["values"]) and ex["tokens"][ex["max_index"]] != ""
    assert "\ufffd" not in text
