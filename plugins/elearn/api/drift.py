"""Drift of a datastore's snapshots: ``GET /api/v1/datastores/{name}/drift`` and the Drift section of
the datastore page (its plots drawn here as inline SVG on the server, as ``elearn.api.usage`` does).

Both read the rows ``elearn.monitoring.drift`` stored; nothing is computed on a request.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query

from elearn.api.svg import svg_open
from elearn.api.v1 import DATASTORE, LIMIT

REFERENCE_COLOUR, CURRENT_COLOUR = "#9fb3c8", "#e12d39"
SNAPSHOT = Annotated[int | None, Query(ge=0, le=2**63 - 1, description="only this snapshot's drift")]

api = APIRouter()  # elearn.api.app mounts it under /api/v1


@api.get("/datastores/{name}/drift", tags=["datastores"],
         summary="per-feature drift (PSI, missing rates, bins) of snapshots against a model's training snapshot, "
                 "newest snapshot first")
def list_drift(name: DATASTORE, snapshot_id: SNAPSHOT = None, limit: LIMIT = 100) -> list[dict]:
    from elearn.datastores import open_table
    from elearn.monitoring.drift import stored_drift

    open_table(name)  # 404 naming the datastore when there is none
    return [r.to_dict() for r in stored_drift(name, snapshot_id, limit=limit)]


def drift_section(name: str, limit: int = 20) -> list[dict]:
    """What the datastore page shows per stored drift row: the report, its features worst first,
    and a plot of reference vs current shares per drifted feature."""
    from elearn.monitoring.drift import stored_drift

    out = []
    for r in stored_drift(name, limit=limit):
        anchor = f"drift-{r.snapshot_id}-{r.reference_snapshot_id}"
        features = sorted(r.features.items(), key=lambda kv: (-kv[1]["psi"], kv[0]))
        plots = [shares_svg(f"{anchor}-{feature}", feature, r.features[feature], r.reference_snapshot_id,
                            r.snapshot_id) for feature in r.drifted]
        out.append({"report": r, "anchor": anchor, "features": features, "plots": plots})
    return out


def shares_svg(chart_id: str, feature: str, f: dict, reference_snapshot_id: int, snapshot_id: int,
               width: int = 460) -> str:
    """A feature's share of rows per bin, the reference's bar above the current one's (bins both
    leave empty are left out)."""
    rows = [(b, r, c) for b, r, c in zip(f["bins"], f["ref"], f["cur"]) if r >= 0.0005 or c >= 0.0005]
    row, left, right = 20, 130, 52
    height = row * len(rows) + 40
    top = max((max(r, c) for _, r, c in rows), default=0) or 1
    scale = (width - left - right) / top
    parts = [svg_open(chart_id, width, height, f"{feature}: share of rows per bin, reference vs current",
                      css="plot drift-plot"),
             f'<text x="4" y="12" font-weight="bold">{html.escape(feature)} · PSI {f["psi"]:.2f}</text>']
    for i, (label, r, c) in enumerate(rows):
        y = 20 + i * row
        name = label if len(label) <= 22 else label[:21] + "…"
        parts.append(f'<g class="bin"><title>{html.escape(label)}: reference {r:.1%}, current {c:.1%}</title>'
                     f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{html.escape(name)}</text>'
                     f'<rect class="ref" x="{left}" y="{y + 2}" width="{max(r * scale, 0.5):.1f}" height="7" '
                     f'fill="{REFERENCE_COLOUR}"/>'
                     f'<rect class="cur" x="{left}" y="{y + 10}" width="{max(c * scale, 0.5):.1f}" height="7" '
                     f'fill="{CURRENT_COLOUR}"/>'
                     f'<text x="{left + max(r, c) * scale + 4:.1f}" y="{y + 13}">{c:.0%}</text></g>')
    parts.append(f'<text x="{left}" y="{height - 6}"><title>reference: snapshot {reference_snapshot_id}; current: '
                 f'snapshot {snapshot_id}</title><tspan fill="{REFERENCE_COLOUR}">■</tspan> reference '
                 f'<tspan fill="{CURRENT_COLOUR}">■</tspan> current (share of rows)</text></svg>')
    return "".join(parts)
