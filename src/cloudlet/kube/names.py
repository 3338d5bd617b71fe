"""Names, labels and constants shared by everything cloudlet puts into a cluster.

One place decides how a model id becomes a Kubernetes name and which labels mark what, because
three parties must agree on them without talking to each other: ``cloudlet deploy`` (rendering
Model resources), the operator (naming and selecting engine pods) and the gateway (finding those
pods' EndpointSlices by label).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cloudlet import __version__
from cloudlet.errors import SpecError

GROUP = "cloudlet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Model"
PLURAL = "models"
CRD_NAME = f"{PLURAL}.{GROUP}"

#: Server-side apply field managers: fixed, so that re-applies own the same fields.
FIELD_MANAGER_DEPLOY = "cloudlet-deploy"
FIELD_MANAGER_OPERATOR = "cloudlet-operator"

#: Label on engine Deployments, pods, Services (and so on their EndpointSlices, which copy the
#: Service's labels): the Model's Kubernetes name.
MODEL_LABEL = f"{GROUP}/model"
#: Pod-template annotation the llama.cpp engine reads its one-model spec from (downward API).
SPEC_ANNOTATION = f"{GROUP}/spec"

#: Every engine Deployment and Service is called ``model-<name>``; a Service name is a DNS-1035
#: label of at most 63 characters, so a Model name has at most 63 - len("model-") of them.
CHILD_PREFIX = "model-"
MAX_MODEL_NAME = 63 - len(CHILD_PREFIX)

GATEWAY_NAME = "cloudlet"
OPERATOR_NAME = "cloudlet-operator"
HTTP_PORT = 8080

_INVALID = re.compile(r"[^a-z0-9-]+")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def kube_name(model_name: str) -> str:
    """The Kubernetes name for a model id: ``Qwen2.5:7b`` becomes ``qwen2-5-7b``.

    Model ids may hold upper case, ``.``, ``_`` and ``:``; Kubernetes names may not. The
    original id stays in the Model's ``spec.modelName``. Returns "" when nothing is left.
    """
    name = _INVALID.sub("-", model_name.lower()).strip("-")
    name = name.lstrip("0123456789-")  # a DNS-1035 label starts with a letter
    return name[:MAX_MODEL_NAME].rstrip("-")


def kube_names(model_names: Iterable[str], source: str = "the spec") -> dict[str, str]:
    """Map every model id to its Kubernetes name; two ids that map to one name are an error."""
    names: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    owners: dict[str, str] = {}
    for index, model in enumerate(model_names):
        name = kube_name(model)
        where = f"models[{index}].name"
        if not _DNS_LABEL.match(name):
            problems.append((where, f"{model!r} gives no usable Kubernetes name (need a letter)"))
        elif name in owners:
            problems.append(
                (where, f"{model!r} and {owners[name]!r} both become Kubernetes name {name!r}")
            )
        else:
            owners[name] = model
            names[model] = name
    if problems:
        raise SpecError(source, problems)
    return names


def child_name(model: str) -> str:
    """Name of the engine Deployment and Service of the Model called ``model``."""
    return CHILD_PREFIX + model


def labels(component: str, instance: str, *, managed_by: str = "cloudlet") -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels."""
    return {
        "app.kubernetes.io/name": "cloudlet",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "cloudlet",
        "app.kubernetes.io/managed-by": managed_by,
        "app.kubernetes.io/version": __version__,
    }


def selector(component: str, instance: str) -> dict[str, str]:
    """The immutable subset of :func:`labels` a Deployment selects its pods by (no version)."""
    return {
        "app.kubernetes.io/name": "cloudlet",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }


def engine_selector(model: str) -> dict[str, str]:
    return {**selector("engine", model), MODEL_LABEL: model}


def selector_string(match_labels: Mapping[str, str]) -> str:
    """``a=b,c=d``: the form the scale subresource's ``status.selector`` takes."""
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
