"""The kubernetes driver against a real cluster: runs only with ``-m k8s`` and KUBECONFIG set.

A 2-worker gang of ``python -m this`` in a public Python image (no elearn image needed) with
the ``builtin`` backend, which needs no gang scheduler installed: elearn places both pods
itself. Set ELEARN_TEST_NAMESPACE (default "default") and ELEARN_TEST_IMAGE to taste.
"""

import os

import pytest

pytestmark = [pytest.mark.k8s, pytest.mark.skipif(not os.environ.get("KUBECONFIG"),
                                                  reason="needs a real cluster: set KUBECONFIG")]


def test_a_gang_runs_to_completion_and_is_deleted(elearn_home):
    from elearn.compute import GangSpec, Resources
    from elearn.compute.kubernetes import KubernetesDriver

    namespace = os.environ.get("ELEARN_TEST_NAMESPACE", "default")
    driver = KubernetesDriver(namespace=namespace, backend="builtin", worker_secret="",
                              image=os.environ.get("ELEARN_TEST_IMAGE", "python:3.12-slim"), poll_s=2)
    lines = []
    spec = GangSpec(name="elearn-k8s-test", workers=2, module="this", resources=Resources(cpu=0.1, memory="64Mi"),
                    schedule_timeout_s=300)
    end = driver.run(spec, "runs/k8s-test", lines.append)
    assert end.status == "succeeded", end.message
    assert any("[worker-1] Beautiful is better than ugly." in line for line in lines)
    core = driver.core
    left = [p.metadata.name for p in core.list_namespaced_pod(namespace).items
            if p.metadata.name.startswith("elearn-k8s-test-")]
    assert left == [] or all(p.metadata.deletion_timestamp for p in core.list_namespaced_pod(namespace).items
                             if p.metadata.name in left)
