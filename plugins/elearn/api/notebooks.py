"""Notebooks through the API and the Airflow UI: list, start, open, stop (``elearn.notebooks``).

Anyone signed in sees which notebooks run; only a user who may change things (edit DAGs)
starts, opens or stops one — opening one runs code on this machine, so its token (the way in)
is shown to them alone.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from elearn.api.auth import may_change, user_name
from elearn.api.pages import _render

api = APIRouter()
ui = APIRouter(include_in_schema=False)

NOTEBOOK = Annotated[str, Path(pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$", examples=["eda"])]


class StartBody(BaseModel):
    name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
    gpus: int = Field(default=0, ge=0, le=64)
    team: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    idle_timeout_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)


def _shown(notebook, request: Request) -> dict:
    out = notebook.public()
    if may_change(request.state.elearn_user):
        out["open_url"] = notebook.open_url
    return out


@api.get("/notebooks", tags=["notebooks"], summary="notebooks running on this machine")
def list_notebooks(request: Request) -> list[dict]:
    from elearn import notebooks

    return [_shown(n, request) for n in notebooks.list_notebooks()]


@api.post("/notebooks", tags=["notebooks"], summary="start a notebook (JupyterLab; GPUs from the gangs' pool)")
def start_notebook(request: Request, body: Annotated[StartBody, Body()]) -> dict:
    from elearn import notebooks

    notebook = notebooks.start(body.name, gpus=body.gpus, team=body.team, idle_timeout_s=body.idle_timeout_s,
                               owner=user_name(request.state.elearn_user))
    return _shown(notebook, request)


@api.delete("/notebooks/{name}", tags=["notebooks"], summary="stop a notebook and free what it held")
def stop_notebook(name: NOTEBOOK) -> dict:
    from elearn import notebooks

    return notebooks.stop(name).public()


@ui.get("/notebooks", response_class=HTMLResponse)
def notebooks_page(request: Request):
    from elearn import notebooks

    editor = may_change(request.state.elearn_user)
    return _render(request, "notebooks.html", "notebooks", notebooks=[_shown(n, request) for n in
                                                                      notebooks.list_notebooks()], editor=editor)
