"""The README's three lines that load a campaign's judgments into pandas, run against a live server."""

from __future__ import annotations

import re

import pandas as pd
from rest_framework.authtoken.models import Token

from labelsite.models import Judgment
from labelsite.selectors.exports import labeller_pseudonym
from tests.conftest import ROOT
from tests.integration.labelsite.test_results import dave, known  # noqa: F401  (fixtures)


def readme_pandas_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- pandas-example -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert block, "README.md lost its pandas example"
    return [line for line in block.group(1).strip().splitlines() if line.strip()]


def test_readme_pandas_example_loads_the_judgments(live_server, known, alice):  # noqa: F811
    lines = readme_pandas_lines()
    assert len(lines) == 3
    key = Token.objects.create(user=alice).key
    code = "\n".join(lines)
    code = code.replace("http://127.0.0.1:8000", live_server.url).replace("YOUR_KEY", key)
    code = re.sub(r"/campaigns/\d+/", f"/campaigns/{known.pk}/", code)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    df = scope["df"]
    assert isinstance(df, pd.DataFrame)
    judged = df[df["status"] == "judged"]
    assert len(judged) == Judgment.objects.count()
    by_code = {(j.item.code, labeller_pseudonym(j.labeller_id)): j for j in Judgment.objects.select_related("item")}
    for row in judged.itertuples():
        j = by_code[(row.item_code, row.labeller)]
        assert row.domain_score == j.answers["domain_score"]
        assert row.time_spent_ms == j.time_spent_ms
