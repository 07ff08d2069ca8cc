"""What this process knows of a study's trials, caught up with the database by revision.

The database stays the study: every write to its trials takes the study's next revision and
stamps it on the rows it wrote (``dbmodels``). A ``StudyHistory`` holds the trials as read up to
some revision, plus the study's ``Search`` (hyperopt's ``Domain``, the trials as TPE reads
them), and catches up by reading only the rows above that revision — what this process, another
worker or a restarted scheduler wrote since. It is only touched under the study's lock
(``open``), and is dropped when anything goes wrong in between, so the next caller reads the
study afresh.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass

from sqlalchemy import select

from elearn.tuning.dbmodels import SqlTrial
from elearn.tuning.entities import FINISHED, UNFINISHED, StudyConfig
from elearn.tuning.search import Search

KEPT_STUDIES = 16  # histories a process keeps (least recently used dropped first)
FREEZE_AFTER = 1000  # trials from which a history's objects are moved out of the collector's sight (gc.freeze)


@dataclass(slots=True)
class TrialRecord:
    """A trial as ``ask`` needs it (its training result and error stay in the database)."""

    id: int
    number: int
    round: int
    params: dict
    source: str
    state: str
    value: float | None
    gang_run_id: int | None
    dag_run_id: str | None
    launches: int


COLUMNS = (SqlTrial.id, SqlTrial.number, SqlTrial.round, SqlTrial.params, SqlTrial.source, SqlTrial.state,
           SqlTrial.value, SqlTrial.gang_run_id, SqlTrial.dag_run_id, SqlTrial.launches)


class StudyHistory:
    """The trials of one study (by number), as of ``revision``; its ``Search`` built on first use."""

    def __init__(self, study_id: int, created_at, config: dict):
        self.study_id, self.created_at, self.config_dict = study_id, created_at, config
        self.config = StudyConfig(**config)
        self.revision = -1  # nothing read yet
        self.trials: dict[int, TrialRecord] = {}
        self.unfinished: set[int] = set()  # numbers of the PENDING and RUNNING trials
        self.states: Counter = Counter()
        self._search: Search | None = None
        self.lock = threading.Lock()

    def matches(self, study_id: int, created_at, config: dict) -> bool:
        return (study_id, created_at, config) == (self.study_id, self.created_at, self.config_dict)

    @property
    def search(self) -> Search:
        if self._search is None:
            self._search = Search(self.config)
            self._search.observe(self.trials.values())
            if len(self.trials) >= FREEZE_AFTER:
                # a history keeps a few objects per trial (its record, its parameters), alive as long
                # as the study is kept: out of the collector's sight, a full collection no longer
                # walks them all (with hyperopt's trial documents, at 10,000 trials it did every few
                # asks, ~100 ms each: the p95 of an ask)
                gc.freeze()
        return self._search

    def catch_up(self, s) -> None:
        """Read the trials written after ``self.revision``."""
        q = (select(*COLUMNS).where(SqlTrial.study_id == self.study_id, SqlTrial.revision > self.revision)
             .order_by(SqlTrial.number))
        self.apply([TrialRecord(*row) for row in s.execute(q)])

    def apply(self, records: list[TrialRecord]) -> None:
        """Take these trials as they are now (new ones, or known ones that changed)."""
        for r in records:
            old = self.trials.get(r.number)
            if old is not None:
                self.states[old.state] -= 1
            self.trials[r.number] = r
            self.states[r.state] += 1
            if r.state in UNFINISHED:
                self.unfinished.add(r.number)
            else:
                self.unfinished.discard(r.number)
        if self._search is not None and records:
            self._search.observe(records)

    def count(self, states) -> int:
        return sum(self.states[s] for s in states)

    @property
    def finished(self) -> int:
        return self.count(FINISHED)


_histories: OrderedDict[tuple, StudyHistory] = OrderedDict()
_lock = threading.Lock()


@contextlib.contextmanager
def open_history(s, study_id: int, created_at, config: dict, revision: int):
    """The study's history, caught up in ``s`` — whose transaction holds the study's lock and
    took its revision ``revision`` — for this thread alone until the block ends. The block
    records its writes (stamped ``revision``) with ``apply``; leaving it commits ``s``, and only
    then does the history count as read up to ``revision``. If the block or the commit raises,
    the history is dropped: it may hold writes the database did not keep."""
    key = (str(s.get_bind().url), study_id)
    with _lock:
        history = _histories.get(key)
        if history is None or not history.matches(study_id, created_at, config) or history.revision > revision:
            history = _histories[key] = StudyHistory(study_id, created_at, config)  # new, changed or rewound
        _histories.move_to_end(key)
        while len(_histories) > KEPT_STUDIES:
            _histories.popitem(last=False)
    with history.lock:
        try:
            history.catch_up(s)
            yield history
            s.commit()
            history.revision = revision
        except BaseException:
            with _lock:
                if _histories.get(key) is history:
                    del _histories[key]
            raise


def forget_all() -> None:
    """Drop every history this process holds (the next call reads its study afresh)."""
    with _lock:
        _histories.clear()
