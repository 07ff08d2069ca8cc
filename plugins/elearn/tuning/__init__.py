"""Hyperparameter tuning: studies whose trials are gangs, state in elearn's database.

``entities`` (what a study and a trial are), ``search`` (hyperopt's side of a study), ``stopping``
(when a study ends, when a trial stops early), ``history`` (what a process knows of a study,
caught up with the database) and ``studies`` (the service: create, ask, tell …)."""

from elearn.tuning.entities import Study, StudyConfig, Trial
from elearn.tuning.studies import (ask, best_trial, create_study, end_round, get_study, list_studies, report_epochs,
                                   should_stop_early, start_trial, tell, trials_of)

__all__ = ["StudyConfig", "Trial", "ask", "best_trial", "create_study", "end_round", "get_study", "list_studies", "report_epochs",
           "should_stop_early", "start_trial", "tell", "trials_of"]
