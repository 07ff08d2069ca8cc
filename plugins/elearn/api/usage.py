"""GPU usage at a glance: ``GET /api/v1/usage/gpu`` and the page ``/ui/usage``.

Both answer from ``elearn.compute.usage_report.gpu_usage`` (its docstring defines every
number). The page draws its plots as inline SVG on the server — no plotting library in the
browser, nothing fetched from a CDN.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse

from elearn.api.pages import COLOURS, _render
from elearn.api.svg import svg_open
from elearn.api.v1 import LIMIT

SINCE_DAYS = Annotated[int, Query(ge=1, le=3660, description="the window: this many UTC days up to today")]
UNTIL_DAYS = Annotated[int, Query(ge=0, le=3660, description="leave out the last this many days")]
TEAM = Annotated[str | None, Query(pattern=r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$", description="only this team",
                                   examples=["vision"])]

api = APIRouter()  # elearn.api.app mounts it under /api/v1
ui = APIRouter(include_in_schema=False)  # and this one under /ui


@api.get("/usage/gpu", tags=["runs"],
         summary="GPU-hours, utilisation, queue waits and goodput of gang runs per team, model version, gang and day")
def gpu_usage(since_days: SINCE_DAYS = 30, until_days: UNTIL_DAYS = 0, team: TEAM = None,
              runs_limit: LIMIT = 200) -> dict:
    from elearn.compute.usage_report import gpu_usage as report

    return jsonable_encoder(dataclasses.asdict(report(since_days, until_days, team, runs_limit)))


@ui.get("/usage", response_class=HTMLResponse)
def usage_page(request: Request, since_days: SINCE_DAYS = 30, until_days: UNTIL_DAYS = 0, team: TEAM = None):
    from elearn.compute.usage_report import UNREGISTERED, gpu_usage as report

    r = report(since_days, until_days, team, runs_limit=200)
    # GPU-hours when any run held a GPU; on a CPU-only installation the same plots in CPU-hours
    measure, unit = ("gpu_hours", "GPU-hours") if r.totals.gpu_hours > 0 else ("cpu_hours", "CPU-hours")
    versions = sorted(r.per_version, key=lambda v: (v.label == UNREGISTERED, -getattr(v, measure)))
    shown = versions[:20] + [v for v in versions[20:] if v.label == UNREGISTERED]
    gangs = sorted(r.per_gang, key=lambda g: -(g.queue_wait_mean_s or 0))[:20]
    plots = {
        "team": hbars_svg("plot-team", [(t.team, getattr(t, measure), _tip(t, unit, measure)) for t in r.per_team],
                          unit),
        "version": hbars_svg("plot-version", [(v.label, getattr(v, measure), _tip(v, unit, measure)) for v in shown],
                             unit),
        "day": days_svg("plot-day", [(d.day, getattr(d, measure), d.gpu_util_mean) for d in r.per_day], unit),
        "queue": hbars_svg("plot-queue", [(f"{g.team}/{g.gang}", (g.queue_wait_mean_s or 0) / 60,
                                           f"{g.runs} runs, longest {(g.queue_wait_max_s or 0) / 60:.1f} min")
                                          for g in gangs], "minutes from asking to admission, mean per run",
                           colour=COLOURS[3], empty="gang runs"),
        "goodput": goodput_svg("plot-goodput", r.runs),
    }
    return _render(request, "usage.html", "usage", r=r, unit=unit, measure=measure, plots=plots,
                   since_days=since_days, until_days=until_days, more_versions=len(versions) - len(shown))


def _tip(u, unit: str, measure: str) -> str:
    util = f", mean GPU util {u.gpu_util_mean:.0f}%" if u.gpu_util_mean is not None else ""
    good = f", GPU goodput {u.gpu_goodput:.0%}" if u.gpu_goodput is not None else \
        f", CPU goodput {u.cpu_goodput:.0%}" if u.cpu_goodput is not None else ""
    return f"{u.runs} runs, {getattr(u, measure):.2f} {unit}{util}{good}"


# ---------------------------------------------------------------- plots (inline SVG)

def _empty(chart_id: str, what: str) -> str:
    return (svg_open(chart_id, 640, 40, what) + f'<text x="8" y="24" fill="#7b8794">No {html.escape(what)} in '
            f'this window.</text></svg>')


def hbars_svg(chart_id: str, bars: list[tuple[str, float, str]], unit: str, width: int = 640,
              colour: str = COLOURS[0], empty: str | None = None) -> str:
    """One horizontal bar per (label, value, tooltip), longest scale = largest value."""
    if not bars:
        return _empty(chart_id, empty or unit)
    row, left, right = 22, 190, 90
    height = row * len(bars) + 24
    top = max((v for _, v, _ in bars), default=0) or 1
    parts = [svg_open(chart_id, width, height, f"{unit} per row")]
    for i, (label, value, tip) in enumerate(bars):
        y, w = 4 + i * row, value / top * (width - left - right)
        name = label if len(label) <= 28 else label[:27] + "…"
        parts.append(f'<g class="bar"><title>{html.escape(label)}: {html.escape(tip)}</title>'
                     f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{html.escape(name)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="{row - 6}" fill="{colour}"/>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 14}">{value:.2f}</text></g>')
    parts.append(f'<text x="{left}" y="{height - 4}" fill="#7b8794">{html.escape(unit)}</text></svg>')
    return "".join(parts)


def days_svg(chart_id: str, days: list[tuple[str, float, float | None]], unit: str, width: int = 720,
             height: int = 240) -> str:
    """A column per day (``unit``) and the day's mean GPU utilisation as a line (0–100 %, right axis)."""
    if not any(v for _, v, _ in days) and not any(u is not None for _, _, u in days):
        return _empty(chart_id, unit)
    pad, bottom = 40, 28
    plot_w, plot_h = width - 2 * pad, height - pad - bottom
    top = max(v for _, v, _ in days) or 1
    step = plot_w / len(days)
    parts = [svg_open(chart_id, width, height, f"{unit} and mean GPU utilisation per day"),
             f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d9e2ec"/>',
             f'<text x="{pad}" y="{pad - 8}">{top:.2f} {html.escape(unit)}</text>',
             f'<text x="{width - pad}" y="{pad - 8}" text-anchor="end" fill="{COLOURS[1]}">100% GPU util</text>',
             f'<text x="{pad}" y="{height - 8}">{html.escape(days[0][0])}</text>',
             f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{html.escape(days[-1][0])}</text>']
    line = []
    for i, (day, value, util) in enumerate(days):
        x, h = pad + i * step, value / top * plot_h
        parts.append(f'<rect class="day" x="{x + step * 0.1:.1f}" y="{pad + plot_h - h:.1f}" '
                     f'width="{max(step * 0.8, 0.5):.1f}" height="{h:.1f}" fill="{COLOURS[0]}">'
                     f'<title>{html.escape(day)}: {value:.2f} {html.escape(unit)}'
                     f'{f", mean GPU util {util:.0f}%" if util is not None else ""}</title></rect>')
        if util is not None:
            line.append(f"{x + step / 2:.1f},{pad + plot_h - util / 100 * plot_h:.1f}")
    if line:
        parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{COLOURS[1]}" stroke-width="2"/>'
                     if len(line) > 1 else
                     f'<circle cx="{line[0].split(",")[0]}" cy="{line[0].split(",")[1]}" r="3" fill="{COLOURS[1]}"/>')
    parts.append("</svg>")
    return "".join(parts)


def goodput_svg(chart_id: str, runs: list, width: int = 720, height: int = 220) -> str:
    """Each ended run's goodput as a dot, oldest left; GPU goodput blue, CPU goodput (no GPU held) green."""
    points = [r for r in reversed(runs) if r.goodput is not None]
    if not points:
        return _empty(chart_id, "ended runs")
    pad = 36
    plot_w, plot_h = width - 2 * pad, height - 2 * pad
    top = max(1.0, max(r.goodput for r in points))
    step = plot_w / max(len(points), 1)
    y100 = pad + plot_h - 1 / top * plot_h
    parts = [svg_open(chart_id, width, height, "goodput per gang run"),
             f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d9e2ec"/>',
             f'<line x1="{pad}" x2="{width - pad}" y1="{y100:.1f}" y2="{y100:.1f}" stroke="#9aa5b1" '
             f'stroke-dasharray="4 3"/><text x="{pad}" y="{y100 - 4:.1f}">100%</text>',
             f'<text x="{pad}" y="{height - 12}">runs, oldest first · '
             f'<tspan fill="{COLOURS[0]}">● GPU goodput</tspan> <tspan fill="{COLOURS[2]}">● CPU goodput</tspan>'
             f'</text>']
    for i, r in enumerate(points):
        x, y = pad + (i + 0.5) * step, pad + plot_h - r.goodput / top * plot_h
        colour = COLOURS[0] if r.goodput_basis == "gpu" else COLOURS[2]
        parts.append(f'<circle class="run" data-run="{r.id}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                     f'<title>run {r.id} {html.escape(r.gang)}: {r.goodput_basis} goodput {r.goodput:.0%}, '
                     f'queued {r.queue_wait_s:.0f} s, wall {r.wall_s or 0:.0f} s</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
