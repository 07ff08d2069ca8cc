"""Releases: the registry's record of what should serve traffic, and the reconciling of it.

A release is the desired state — stable version, canary version, canary weight, gates, state —
kept in elearn's database. ``reconcile`` makes the world match it through the serving backend
(``elearn.serving.backend``): on one machine a ``bentoml serve`` daemon per version that gets
traffic and the nginx proxy's weights; on Kubernetes Deployments and a weighted HTTPRoute.
Promotion moves the ``production`` alias and the weights together; a rollback restores both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select

from elearn.db import session_scope
from elearn.errors import ConfigError, Conflict, InvalidInput, NotFound
from elearn.leases import now
from elearn.serving.backend import ServingBackend
from elearn.serving.dbmodels import SqlRelease
from elearn.serving.gates import Decision, Gates, VersionStats, evaluate

PRODUCTION = "production"


@dataclass(frozen=True)
class Release:
    id: int
    model: str
    stable: int | None
    canary: int
    canary_weight: int
    gates: Gates
    state: str  # RUNNING PROMOTED ROLLED_BACK
    started_at: datetime
    history: list

    @property
    def weights(self) -> dict[int, int]:
        """Version -> percent of traffic the release asks for."""
        if self.stable is None:
            return {self.canary: 100}
        return {self.stable: 100 - self.canary_weight, self.canary: self.canary_weight}


def _entity(row: SqlRelease) -> Release:
    return Release(id=row.id, model=row.model, stable=row.stable_version, canary=row.canary_version,
                   canary_weight=row.canary_weight, gates=Gates(**row.gates), state=row.state,
                   started_at=row.started_at, history=list(row.history or []))


def get_release(release_id: int) -> Release:
    with session_scope() as s:
        row = s.get(SqlRelease, release_id)
        if row is None:
            raise NotFound(f"release {release_id} does not exist")
        return _entity(row)


def list_releases(model: str | None = None, limit: int = 100) -> list[Release]:
    """Releases, newest first, optionally of one model."""
    with session_scope() as s:
        query = select(SqlRelease).order_by(SqlRelease.id.desc()).limit(limit)
        if model is not None:
            query = query.where(SqlRelease.model == model)
        return [_entity(r) for r in s.scalars(query)]


def current_release(model: str) -> Release:
    with session_scope() as s:
        row = s.scalar(select(SqlRelease).where(SqlRelease.model == model).order_by(SqlRelease.id.desc()).limit(1))
        if row is None:
            raise NotFound(f"model {model!r} has no release; start one with `elearn release start`")
        return _entity(row)


def _no_running_release(model: str, session=None) -> None:
    if session is None:
        with session_scope() as s:
            return _no_running_release(model, s)
    running = session.scalar(select(SqlRelease).where(SqlRelease.model == model, SqlRelease.state == "RUNNING"))
    if running is not None:
        raise Conflict(f"{model} already has a running release (v{running.canary_version}); promote or roll "
                       f"it back first (elearn release promote|rollback {model})")


def start_release(model: str, canary: int, *, weight: int = 10, gates: Gates | None = None, by: str = "",
                  force: bool = False, on_line=print) -> Release:
    """Release version ``canary`` beside ``production`` with ``weight`` % of the traffic.

    The candidate must be READY with a Bento, and saved unless ``force``. With a production
    version it must first pass the quality gate (held-out AUC on its own snapshot, not worse
    than production's by more than ``gates.auc_margin``; recorded in its lineage). With no
    production version yet it becomes production at once (state PROMOTED)."""
    from elearn.registry import get_store
    from elearn.registry.sqlalchemy_store import lock_version, version_status

    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 99:
        raise InvalidInput(f"canary weight {weight!r} must be a whole percent from 1 to 99 (stable keeps the rest)")
    store = get_store()
    mv = store.get_version(model, canary)
    try:
        stable = store.get_by_alias(model, PRODUCTION).version
    except NotFound:
        stable = None
    if stable == canary:
        raise Conflict(f"{model} v{canary} is already production")
    if mv.status != "READY" or not mv.bento_tag:
        raise Conflict(f"{model} v{canary} is {mv.status}{'' if mv.bento_tag else ' without a Bento'}; "
                       f"only a READY, packaged version can be released (BuildBentoOperator or the "
                       f"release_model DAG packages it)")
    if not mv.saved and not force:
        raise Conflict(f"{model} v{canary} is not saved; save it first (elearn model save {model} {canary}) "
                       f"so the released version can never be collected, or pass --force")
    gates = gates or Gates()
    _no_running_release(model)
    if stable is not None:
        from elearn.serving import quality

        verdict = quality.check(model, canary, stable, gates.auc_margin, by=by, on_line=on_line)
        if verdict.action != "promote":
            raise Conflict(f"{model} v{canary} is not released: {verdict.reason} (quality gate, recorded in its "
                           f"lineage; a larger --auc-margin lets it through)")
        on_line(f"quality gate passed: {verdict.reason}")
    with session_scope() as s:
        lock_version(s, model, canary)  # a claim for removal of the canary and this start never both pass
        _no_running_release(model, s)
        if (status := version_status(s, model, canary)) != "READY":
            raise Conflict(f"{model} v{canary} became {status} meanwhile; only a READY version can be released")
        row = SqlRelease(model=model, stable_version=stable, canary_version=canary,
                         canary_weight=weight if stable else 100, gates=asdict(gates),
                         state="RUNNING", started_at=now(),
                         history=[{"at": now().isoformat(), "event": "started", "by": by}])
        s.add(row)
        s.flush()
        release = _entity(row)
    if stable is None:  # nothing to compare with: the first version becomes production
        return finish(release, Decision("promote", "no production version yet"), by=by)
    return release


def finish(release: Release, decision: Decision, *, by: str = "") -> Release:
    """Promote (alias and all traffic to the canary) or roll back (all traffic to stable).

    The release's state changes only if it is still RUNNING, in one conditional UPDATE, so two
    finishers (the gates and a person, or a promote after a rollback) never both win; a refused
    finish raises ``Conflict`` and changes nothing. ``production`` moves last, after the state
    change won; if moving it fails, the release is RUNNING again and the error is raised."""
    from sqlalchemy import update

    from elearn.registry import get_store

    if decision.action not in ("promote", "rollback"):
        raise InvalidInput(f"a release ends with promote or rollback, not {decision.action!r}")
    state = "PROMOTED" if decision.action == "promote" else "ROLLED_BACK"
    with session_scope() as s:
        won = s.execute(update(SqlRelease).where(SqlRelease.id == release.id, SqlRelease.state == "RUNNING")
                        .values(state=state, canary_weight=100 if decision.action == "promote" else 0)).rowcount
        row = s.get(SqlRelease, release.id)
        if row is None:
            raise NotFound(f"release {release.id} does not exist")
        if not won:
            raise Conflict(f"release {release.id} of {release.model} is already {row.state}; nothing was changed")
        row.history = [*row.history, {"at": now().isoformat(), "event": decision.action, "reason": decision.reason,
                                      "by": by}]
        s.flush()
        finished = _entity(row)
    if decision.action == "promote":
        try:
            get_store().set_alias(release.model, PRODUCTION, release.canary, changed_by=by or "release")
        except BaseException:
            with session_scope() as s:  # production did not move: the release is not over
                row = s.get(SqlRelease, release.id)
                row.state, row.canary_weight = "RUNNING", release.canary_weight
                row.history = row.history[:-1]
            raise
    return finished


def get_backend(name: str | None = None, *, proxy_port: int | None = None, api_client=None) -> ServingBackend:
    """The backend the configuration names (``serving_backend``). ``proxy_port``: the local
    proxy's port (default config ``proxy_port``); ``api_client``: a Kubernetes client (default
    the in-cluster account, else ``$KUBECONFIG``)."""
    from elearn import config

    name = name or config.load().serving_backend
    if name == "local":
        from elearn.serving.local import LocalServing

        return LocalServing(proxy_port)
    if name == "kubernetes":
        from elearn.serving.kubernetes import KubernetesServing

        return KubernetesServing(api_client)
    raise ConfigError(f"serving backend {name!r} is not one of local, kubernetes")


def reconcile(release: Release, proxy_port: int | None = None) -> str:
    """Make the world match ``release`` through the configured serving backend (``serving_backend``):
    the versions with traffic served with their weights, the model's others stopped. Returns where
    callers reach the model."""
    return get_backend(proxy_port=proxy_port).apply(release)


def evaluate_release(release: Release, proxy_port: int | None = None) -> Decision:
    """One evaluation of the live gates over what the backend measured in the release's window."""
    if release.state != "RUNNING":
        return Decision("wait", f"release {release.id} is {release.state}")
    since = max(release.started_at.timestamp(), now().timestamp() - release.gates.window_s)
    stats = get_backend(proxy_port=proxy_port).stats(release, since)
    empty = VersionStats(0, 0, 0.0)
    elapsed = now().timestamp() - release.started_at.timestamp()
    return evaluate(release.gates, stats.get(release.stable, empty), stats.get(release.canary, empty), elapsed)


def shutdown(model: str, proxy_port: int | None = None) -> None:
    """Stop serving ``model`` (the records stay)."""
    get_backend(proxy_port=proxy_port).down(model)
