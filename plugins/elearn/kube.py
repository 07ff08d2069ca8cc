"""Talking to a Kubernetes API server, for every part of elearn that does (the gang driver,
releases on Kubernetes): a client from the environment, and retries of transient errors.

Every call goes through ``api_call``: a transient failure (429 with its Retry-After, 5xx, a
timeout, a reset connection) is retried with exponential backoff; anything else is raised.
"""

from __future__ import annotations

import os

import tenacity

from elearn.errors import ConfigError

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
API_ATTEMPTS = 6


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: the server was busy or the connection failed."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS or exc.status == 0  # 0: the client's own connection error
    return isinstance(exc, (HTTPError, ConnectionError, TimeoutError))


class _RetryAfterOrBackoff(tenacity.wait.wait_base):
    """Retry-After of a 429 when the server gives one, else exponential backoff (0.2 s … 10 s)."""

    backoff = tenacity.wait_exponential(multiplier=0.2, min=0.2, max=10)

    def __call__(self, retry_state):
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = ((getattr(exc, "headers", None) or {}).get("Retry-After")
                       if getattr(exc, "status", None) == 429 else None)
        if retry_after and str(retry_after).isdigit():
            return min(float(retry_after), 30.0)
        return self.backoff(retry_state)


api_call = tenacity.retry(stop=tenacity.stop_after_attempt(API_ATTEMPTS), wait=_RetryAfterOrBackoff(),
                          retry=tenacity.retry_if_exception(transient), reraise=True)


def client_from_environment(who: str, alternative: str):
    """A ``kubernetes.client.ApiClient``: the in-cluster account, else ``$KUBECONFIG`` (read now,
    not at import). ``who`` and ``alternative`` name the caller and its other way in, for the error."""
    import kubernetes

    cfg = kubernetes.client.Configuration()  # our own, not the process-wide default
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)
        except (kubernetes.config.ConfigException, OSError) as e:
            raise ConfigError(f"{who} found no cluster ({e}); set KUBECONFIG, run inside the cluster, or "
                              f"{alternative}") from e
    return kubernetes.client.ApiClient(cfg)
