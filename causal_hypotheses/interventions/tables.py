"""Layer x head tables that draw themselves: what sweeps and direct logit attribution return.

:class:`HeadTable` is a pandas DataFrame (every DataFrame operation works and keeps the type) whose
notebook display is a heatmap (reports/plots.py, imported only when a notebook asks for the
drawing) above the usual table."""
from __future__ import annotations

import pandas as pd


class HeadTable(pd.DataFrame):
    """A pandas DataFrame, index ``layer`` and columns ``head``, shown in notebooks as a heatmap
    (diverging colours centred at 0, each value in its cell's tooltip) above the table."""

    @property
    def _constructor(self):
        return HeadTable

    def heatmap_svg(self, title: str | None = None) -> str:
        """The table as a self-contained SVG heatmap (see reports.plots.heatmap_svg)."""
        from ..reports.plots import heatmap_svg

        return heatmap_svg(self, title=title)

    def _repr_html_(self) -> str | None:
        table = super()._repr_html_()
        if self.empty or self.ndim != 2:
            return table
        return f"<div>{self.heatmap_svg()}</div>{table or ''}"


def empty_head_table(n_layers: int, n_heads: int) -> HeadTable:
    """A layer x head HeadTable of NaN, to fill in."""
    return HeadTable(float("nan"), index=pd.RangeIndex(n_layers, name="layer"), columns=pd.RangeIndex(n_heads, name="head"))
