"""The real-cluster suite: opt in with ``pytest -m e2e tests/e2e`` and a kubeconfig.

It is deselected unless ``-m`` names it, so the default run never touches a cluster (and never
skips). It needs cluster-admin on a disposable cluster (kind, k3d, minikube): it installs the
CRD and creates, then deletes, a namespace of its own. Environment:

- ``KUBECONFIG`` / ``CLOUDLET_E2E_CONTEXT``: which cluster;
- ``CLOUDLET_E2E_IMAGE``: a cloudlet image the cluster can pull (e.g. loaded with
  ``kind load docker-image``); when set, a llama.cpp Model must also become Ready.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a real Kubernetes cluster (opt-in: -m e2e)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "e2e" in (config.getoption("markexpr") or ""):
        return  # asked for by name (`-m e2e`)
    deselected = [item for item in items if item.get_closest_marker("e2e")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("e2e")]
