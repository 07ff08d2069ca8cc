"""Inline SVG charts of the pages: what every chart shares."""

from __future__ import annotations

import html


def svg_open(chart_id: str, width: int, height: int, label: str, css: str = "plot") -> str:
    """The opening tag of an inline SVG chart of the pages (``label``: what a screen reader says)."""
    return (f'<svg id="{html.escape(chart_id)}" class="{css}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(label)}" '
            f'font-size="11">')
