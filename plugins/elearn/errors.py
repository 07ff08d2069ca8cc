"""The error tree. Every error names the thing and says what to do about it."""

from __future__ import annotations


class ElearnError(Exception):
    """Base of every error elearn raises on purpose; ``http_status`` maps it for the API."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(ElearnError):
    http_status = 400
    code = "invalid_input"


class ConfigError(InvalidInput):
    code = "invalid_config"


class NotFound(ElearnError):
    http_status = 404
    code = "not_found"


class AlreadyExists(ElearnError):
    http_status = 409
    code = "already_exists"


class Conflict(ElearnError):
    http_status = 409
    code = "conflict"


class DataError(InvalidInput):
    """Input data is missing, corrupt or does not match its schema."""

    code = "bad_data"


class GangFailed(ElearnError):
    """A gang worker exited non-zero; the whole gang was torn down."""

    code = "gang_failed"


class GangStopped(GangFailed):
    """A gang was stopped on purpose (on_kill, the early-stopping rule, the task's execution
    timeout) and torn down; it is never restarted."""

    code = "gang_stopped"


class GangTimeout(ElearnError):
    code = "gang_timeout"
    http_status = 504


class QuotaExceeded(ElearnError):
    http_status = 429
    code = "quota_exceeded"


class MetricsUnavailable(ElearnError):
    """The metrics source (Prometheus) could not answer; the gates cannot decide now."""

    http_status = 503
    code = "metrics_unavailable"
