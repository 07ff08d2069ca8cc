"""Releases: the registry's record of what should serve traffic, and the reconciling of it.

A release is the desired state — stable version, canary version, canary weight, gates, state —
kept in elearn's database. ``reconcile`` makes the world match it on this machine: a
``bentoml serve`` daemon per version that gets traffic, and the nginx proxy's weights.
Promotion moves the ``production`` alias and the weights together; a rollback restores both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select

from elearn.db import session_scope
from elearn.errors import Conflict, InvalidInput, NotFound
from elearn.leases import now
from elearn.serving.dbmodels import SqlRelease
from elearn.serving.gates import Decision, Gates, VersionStats, evaluate, stats_from_attempts

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


def local_proxy(port: int | None = None):
    """This machine's proxy (its files under ``$ELEARN_HOME/run/proxy``; port: config ``proxy_port``)."""
    from elearn import config
    from elearn.serving.daemons import run_dir
    from elearn.serving.proxy import LocalProxy

    return LocalProxy(run_dir() / "proxy", port or config.load().proxy_port)


def desired_weights(release: Release) -> dict[int, int]:
    """Version -> percent of traffic the release asks for."""
    if release.stable is None:
        return {release.canary: 100}
    return {release.stable: 100 - release.canary_weight, release.canary: release.canary_weight}


def reconcile(release: Release, proxy_port: int | None = None):
    """Make this machine match ``release``: daemons for versions with traffic (others stopped),
    nginx with the weights. Returns the proxy."""
    from elearn.registry import get_store
    from elearn.serving.daemons import BentoDaemon, run_dir

    store = get_store()
    weights = desired_weights(release)
    backends = {}
    for version, weight in weights.items():
        daemon = BentoDaemon(release.model, version)
        if weight > 0:
            backends[daemon.start(store.get_version(release.model, version).bento_tag)] = weight
    proxy = local_proxy(proxy_port)
    proxy.apply(backends)
    for version, weight in weights.items():
        if weight == 0:
            BentoDaemon(release.model, version).stop()
    (run_dir() / f"release-{release.model}.json").write_text(json.dumps({"release": release.id,
                                                                         "weights": weights}))
    return proxy


def evaluate_release(release: Release, proxy_port: int | None = None) -> Decision:
    """One evaluation of the live gates from the proxy's access log (the release's window)."""
    from elearn.serving.daemons import BentoDaemon

    if release.state != "RUNNING":
        return Decision("wait", f"release {release.id} is {release.state}")
    proxy = local_proxy(proxy_port)
    # the addresses the proxy was given, also of a server that has died since
    upstreams = {f"127.0.0.1:{recorded['port']}": version for version in (release.stable, release.canary)
                 if (recorded := BentoDaemon(release.model, version).recorded())}
    since = max(release.started_at.timestamp(), now().timestamp() - release.gates.window_s)
    attempts = proxy.access_log_reader(f"release-{release.id}").attempts_since(since)  # only what is new
    stats = stats_from_attempts(attempts, upstreams, since)
    empty = VersionStats(0, 0, 0.0)
    elapsed = now().timestamp() - release.started_at.timestamp()
    return evaluate(release.gates, stats.get(release.stable, empty), stats.get(release.canary, empty), elapsed)


def shutdown(model: str, proxy_port: int | None = None) -> None:
    """Stop the proxy and every Bento daemon of ``model`` on this machine (the records stay)."""
    from elearn.serving.daemons import BentoDaemon, run_dir

    local_proxy(proxy_port).stop()
    for state_file in run_dir().glob(f"bento-{model}-v*.json"):
        BentoDaemon(model, int(state_file.stem.rsplit("-v", 1)[1])).stop()
