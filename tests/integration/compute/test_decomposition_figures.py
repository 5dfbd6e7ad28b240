"""The decomposition summary chart: each SAE's label sits centred under its group of bars."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from compute.ml.decomposition import CLASSES
from compute.services.decomposition_figures import summary_figure


@pytest.mark.parametrize("n_rows", [1, 3])
def test_labels_are_centred_under_their_bars(n_rows):
    rows = [
        {"label": f"sae-{i}-with-a-rather-long-name", "counts": {cls: k + i + 1 for k, cls in enumerate(CLASSES)}}
        for i in range(n_rows)
    ]
    fig = summary_figure(rows)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    bars = sorted(ax.patches, key=lambda p: p.get_x())
    assert len(bars) == n_rows * len(CLASSES)
    for i, label in enumerate(ax.get_xticklabels()):
        group = bars[i * len(CLASSES) : (i + 1) * len(CLASSES)]
        left = group[0].get_window_extent(renderer).x0
        right = group[-1].get_window_extent(renderer).x1
        box = label.get_window_extent(renderer)
        assert abs((box.x0 + box.x1) / 2 - (left + right) / 2) < 2.0, (i, box, left, right)
        assert label.get_text().replace("\n", "") == rows[i]["label"]
