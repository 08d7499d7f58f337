"""The measurement interface (claims/record.py) for results shaped like a scrub's: a fraction
of the change from ``ablated`` to ``clean`` that ``scrubbed`` recovers.  ScrubResult and
EffectResult (a patch's target, base and patched runs in those fields) share it."""
from __future__ import annotations


class FractionOfChange:
    """Read-only aliases: value = fraction_recovered, target/base/intervened = clean/ablated/scrubbed."""

    @property
    def value(self) -> float:
        return self.fraction_recovered

    @property
    def target(self) -> float:
        return self.clean

    @property
    def base(self) -> float:
        return self.ablated

    @property
    def intervened(self) -> float:
        return self.scrubbed

    @property
    def details(self) -> list[dict]:
        return []

    def _repr_html_(self) -> str:
        """In notebooks: the facts, the interval and the per-example distribution, drawn as on the
        run's page (reports/notebook.py, imported only when a notebook asks for the drawing)."""
        from ..reports.notebook import measurement_html

        return measurement_html(self)
