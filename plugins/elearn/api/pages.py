"""The pages the Airflow UI shows (``external_views``): Datastores, Models, Studies, Runs, Releases.

Rendered on the server from the same functions as the REST API (``elearn.api.v1``), so a page
shows exactly what the API answers. The browser's Airflow session cookie signs them in; a
visitor without one is sent to Airflow's login page (``elearn.api.app``).

A user who may change things sees controls (save, release, promote, roll back, reproduce): each
calls the REST API from the page with the page's CSRF token (``elearn.api.auth``), asks first
where it moves production, and then shows the page again with the API's answer or error.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from elearn.api import v1
from elearn.api.auth import csrf_token, may_change
from elearn.api.svg import svg_open

router = APIRouter(include_in_schema=False)
_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(["html"]))


def _render(request: Request, name: str, section: str, **context) -> HTMLResponse:
    root = request.scope.get("root_path", "")  # "/elearn" when Airflow mounts the app
    airflow = root.rsplit("/elearn", 1)[0] if root.endswith("/elearn") else ""
    user = request.state.elearn_user
    page = _templates.get_template(name).render(ui=f"{root}/ui", api=f"{root}/api/v1", airflow=airflow,
                                                section=section, can_change=may_change(user),
                                                csrf_token=csrf_token(user), **context)
    return HTMLResponse(page)


def _production(store, models) -> dict[str, int | None]:
    """Each model's production version (None: none yet, so a release start makes one)."""
    from elearn.errors import NotFound
    from elearn.serving.releases import PRODUCTION

    out = {}
    for model in models:
        try:
            out[model] = store.get_by_alias(model, PRODUCTION).version
        except NotFound:
            out[model] = None
    return out


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def index(request: Request):
    return RedirectResponse(f"{request.scope.get('root_path', '')}/ui/models")


@router.get("/datastores", response_class=HTMLResponse)
def datastores(request: Request):
    return _render(request, "datastores.html", "datastores", datastores=v1.list_datastores())


@router.get("/datastores/{name}", response_class=HTMLResponse)
def datastore(request: Request, name: v1.DATASTORE):
    from elearn.api.drift import drift_section
    from elearn.datastores.history import snapshot_page
    from elearn.registry import get_store

    used_by: dict[int, list] = {}
    for version in get_store().list_versions():
        trained_on = version.typed_lineage.trained_on
        if trained_on is not None and trained_on.name == name:
            used_by.setdefault(trained_on.snapshot_id, []).append(version)
    return _render(request, "datastore.html", "datastores", d=v1.get_datastore(name),
                   snapshots=snapshot_page(name, limit=1000), used_by=used_by,
                   drift=drift_section(name))


@router.get("/models", response_class=HTMLResponse)
def models(request: Request):
    from elearn.monitoring.live import latest_live_auc
    from elearn.registry import get_store

    store = get_store()
    versions = store.list_versions(limit=500)
    return _render(request, "models.html", "models", versions=versions,
                   production=_production(store, {v.model_name for v in versions}), live_auc=latest_live_auc())


@router.get("/models/{model}/{version}", response_class=HTMLResponse)
def version(request: Request, model: v1.MODEL, version: v1.VERSION):
    from elearn.monitoring.live import live_quality
    from elearn.registry import get_store

    store = get_store()
    mv = store.get_version(model, version)
    live = live_quality(model, version)
    return _render(request, "version.html", "models", v=mv, production=_production(store, [model]), live=live,
                   live_svg=live_auc_svg(live.days, live.training_auc))


@router.get("/studies", response_class=HTMLResponse)
def studies(request: Request):
    from elearn.tuning import list_studies

    return _render(request, "studies.html", "studies", studies=list_studies())


@router.get("/studies/{name}", response_class=HTMLResponse)
def study(request: Request, name: v1.STUDY):
    from elearn.tuning import best_trial, get_study, trials_of
    from elearn.tuning.studies import curves

    best = best_trial(name)
    return _render(request, "study.html", "studies", study=get_study(name), trials=trials_of(name),
                   best=best.number if best else None, curves_svg=curves_svg(curves(name)))


@router.get("/runs", response_class=HTMLResponse)
def runs(request: Request):
    from elearn.compute import runs as gang_runs

    return _render(request, "runs.html", "runs", runs=gang_runs.list_runs(limit=200))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, run_id: v1.RUN_ID):
    from elearn.compute import runs as gang_runs

    return _render(request, "run.html", "runs", r=gang_runs.get_run(run_id))


@router.get("/releases", response_class=HTMLResponse)
def releases(request: Request):
    from elearn.serving.releases import list_releases

    return _render(request, "releases.html", "releases", releases=list_releases())


COLOURS = ["#2680c2", "#e12d39", "#27ab83", "#f0b429", "#8719e0", "#486581", "#de911d", "#0c6b58"]


def curves_svg(curves: dict[int, dict[int, float]], width: int = 640, height: int = 240) -> str:
    """Each trial's metric by epoch as one polyline (an inline SVG; no plotting library in the page)."""
    points = [(e, v) for c in curves.values() for e, v in c.items()]
    if not points:
        return '<p class="muted">No per-epoch values reported yet.</p>'
    pad = 36
    e_lo, e_hi = min(e for e, _ in points), max(e for e, _ in points)
    v_lo, v_hi = min(v for _, v in points), max(v for _, v in points)
    e_span, v_span = (e_hi - e_lo) or 1, (v_hi - v_lo) or 1

    def xy(e, v):
        return (pad + (e - e_lo) / e_span * (width - 2 * pad), height - pad - (v - v_lo) / v_span * (height - 2 * pad))

    parts = [f'<svg id="curves" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="metric by epoch per trial">',
             f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" '
             f'stroke="#d9e2ec"/>',
             f'<text x="{pad}" y="{pad - 8}" font-size="11">{v_hi:.4f}</text>',
             f'<text x="{pad}" y="{height - pad + 14}" font-size="11">{v_lo:.4f} · epoch {e_lo}–{e_hi}</text>']
    for i, (number, curve) in enumerate(sorted(curves.items())):
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(e, v) for e, v in sorted(curve.items())))
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<polyline class="trial-curve" data-trial="{number}" points="{coords}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"><title>trial {html.escape(str(number))}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)


def live_auc_svg(days: list, training_auc: float | None, width: int = 720, height: int = 240) -> str:
    """A version's live AUC per scored day as a line (x: the date, gaps where no labels came), the
    training AUC as a dashed horizontal line; a day whose labels are one class only is a hollow
    mark on the axis (its AUC is undefined). ``days``: ``LiveDay``s, oldest first."""
    from datetime import date

    if not days:
        return '<p class="muted">No live AUC yet: no labels have arrived for this version\'s predictions.</p>'
    pad, bottom = 44, 28
    plot_w, plot_h = width - 2 * pad, height - pad - bottom
    at = [date.fromisoformat(d.day).toordinal() for d in days]
    values = [d.auc for d in days if d.auc is not None] + ([training_auc] if training_auc is not None else [])
    lo, hi = (max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.05)) if values else (0.0, 1.0)
    span, x_span = (hi - lo) or 1, (at[-1] - at[0]) or 1
    legend = ' · <tspan fill="#486581">- - training</tspan>' if training_auc is not None else ""

    def x(ordinal):
        return pad + (ordinal - at[0]) / x_span * plot_w if len(days) > 1 else pad + plot_w / 2

    def y(value):
        return pad + plot_h - (value - lo) / span * plot_h

    parts = [svg_open("live-auc", width, height, "live AUC per day beside the training AUC"),
             f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d9e2ec"/>',
             f'<text x="{pad}" y="{pad - 8}">AUC {hi:.2f} · <tspan fill="{COLOURS[0]}">● live, per day</tspan>'
             f'{legend}</text>',
             f'<text x="{pad}" y="{height - 8}">{html.escape(days[0].day)} · AUC axis from {lo:.2f}</text>',
             f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{html.escape(days[-1].day)}</text>']
    if training_auc is not None:
        parts.append(f'<line id="training-auc" data-auc="{training_auc:.6f}" x1="{pad}" x2="{width - pad}" '
                     f'y1="{y(training_auc):.1f}" y2="{y(training_auc):.1f}" stroke="#486581" stroke-dasharray="6 4">'
                     f'<title>training AUC {training_auc:.4f}</title></line>'
                     f'<text x="{width - pad - 4}" y="{y(training_auc) - 4:.1f}" text-anchor="end" fill="#486581">'
                     f'training AUC {training_auc:.4f}</text>')
    run: list[str] = []  # consecutive days with an AUC make one polyline

    def close_run():
        if len(run) > 1:
            parts.append(f'<polyline class="live-curve" points="{" ".join(run)}" fill="none" stroke="{COLOURS[0]}" '
                         f'stroke-width="2"/>')
        run.clear()

    for i, (d, ordinal) in enumerate(zip(days, at)):
        if i and ordinal - at[i - 1] > 1:
            close_run()
        if d.auc is None:
            close_run()
            parts.append(f'<circle class="one-class" data-day="{d.day}" cx="{x(ordinal):.1f}" cy="{pad + plot_h:.1f}" '
                         f'r="3.5" fill="white" stroke="{COLOURS[1]}"><title>{html.escape(d.day)}: '
                         f'{html.escape(d.note or "")}</title></circle>')
            continue
        run.append(f"{x(ordinal):.1f},{y(d.auc):.1f}")
        parts.append(f'<circle class="live-day" data-day="{d.day}" data-auc="{d.auc:.6f}" cx="{x(ordinal):.1f}" '
                     f'cy="{y(d.auc):.1f}" r="3" fill="{COLOURS[0]}"><title>{html.escape(d.day)}: AUC {d.auc:.4f} on '
                     f'{d.rows} flights ({d.positives} delayed)</title></circle>')
    close_run()
    parts.append("</svg>")
    return "".join(parts)
