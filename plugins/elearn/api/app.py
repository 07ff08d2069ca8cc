"""The FastAPI app the plugin mounts at ``/elearn``.

Only a health endpoint so far: Airflow 3.3 mounts plugin apps without authentication, so
no registry data is served here until every route requires Airflow's auth (issue 8).
"""

from __future__ import annotations

from fastapi import FastAPI

import elearn


def create_app() -> FastAPI:
    app = FastAPI(title="elearn", version=elearn.__version__)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "version": elearn.__version__}

    return app
