"""Hyperparameter tuning: studies whose trials are gangs, state in elearn's database."""

from elearn.tuning.studies import (StudyConfig, Trial, ask, best_trial, create_study, end_round, get_study,
                                   list_studies,
                                   report_epochs, should_stop_early, start_trial, tell, trials_of)

__all__ = ["StudyConfig", "Trial", "ask", "best_trial", "create_study", "end_round", "get_study", "list_studies", "report_epochs",
           "should_stop_early", "start_trial", "tell", "trials_of"]
