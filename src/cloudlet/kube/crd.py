"""The Model CustomResourceDefinition (``models.cloudlet.dev``, namespaced), as data.

The schema is where a bad Model is refused: the API server checks types, enums, patterns and the
CEL rules (``x-kubernetes-validations``) before the operator ever sees the object, and
``kubectl explain model.spec`` shows the descriptions. The status and scale subresources let
``kubectl wait --for=condition=Ready``, ``kubectl scale``, the HPA and KEDA work on a Model as on a
Deployment. Kept as a function returning fresh dicts so callers can never share mutated state.
"""

from __future__ import annotations

from typing import Any

from cloudlet.kube.names import API_VERSION, CRD_NAME, GROUP, KIND, MAX_MODEL_NAME, PLURAL, VERSION

Schema = dict[str, Any]

URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s]*)?$"
ENGINES = ("llamacpp", "vllm", "remote")
CONDITION_TYPES = ("Ready", "Progressing", "Degraded")
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
#: The shape of a resource.Quantity (``500m``, ``4Gi``, ``1e3``), as the API server accepts it.
QUANTITY_PATTERN = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"


def _int(minimum: int, maximum: int | None = None, description: str = "") -> Schema:
    out: Schema = {"type": "integer", "format": "int32", "minimum": minimum}
    if maximum is not None:
        out["maximum"] = maximum
    if description:
        out["description"] = description
    return out


def _str(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _quantities(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        },
    }


def _free_object(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def spec_schema() -> Schema:
    return {
        "type": "object",
        "required": ["engine"],
        "properties": {
            "modelName": _str(
                "The model id clients send (default: metadata.name).",
                minLength=1,
                maxLength=64,
                pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
            ),
            "engine": _str(
                "llamacpp: the cloudlet image serving this one model on CPU; vllm: vLLM's "
                "OpenAI server on GPU nodes; remote: an OpenAI-compatible URL, no pods.",
                enum=list(ENGINES),
            ),
            "source": _str(
                "Model weights: package://pkg/file.gguf or file:///path (llamacpp); a Hugging "
                "Face id, hf://org/name or a path (vllm).",
                minLength=1,
                maxLength=2048,
            ),
            "url": _str("Base URL of a remote engine.", maxLength=2048, pattern=URL_PATTERN),
            "urls": {
                "type": "array",
                "description": "Several equivalent remote base URLs, balanced by the gateway.",
                "maxItems": 32,
                "items": {"type": "string", "maxLength": 2048, "pattern": URL_PATTERN},
            },
            "apiKeySecretRef": {
                "type": "object",
                "description": "Secret key holding the remote engine's API key (never inlined).",
                "required": ["name", "key"],
                "properties": {"name": _str("Secret name."), "key": _str("Key in the Secret.")},
            },
            "options": _free_object(
                "Engine options; for llamacpp the cloudlet model fields (kind, context, "
                "parallel, queue_size, threads, max_tokens_default), checked by the operator."
            ),
            "image": _str("Container image (default: the operator's engine image).", minLength=1),
            "args": {
                "type": "array",
                "description": "Extra arguments for the engine's command line.",
                "items": {"type": "string"},
            },
            "resources": {
                "type": "object",
                "description": "Container resources; requests are always set (defaults fill in).",
                "properties": {
                    "requests": _quantities("Minimum resources, e.g. cpu: 2, memory: 4Gi."),
                    "limits": _quantities("Maximum resources."),
                },
            },
            "accelerator": {
                "type": "object",
                "description": "Accelerators per replica, requested as an extended resource.",
                "properties": {
                    "resource": _str(
                        "Extended resource name.", default="nvidia.com/gpu", minLength=1
                    ),
                    "count": _int(1, 64, "How many per replica."),
                },
            },
            "modelVolume": {
                "type": "object",
                "description": "A PersistentVolumeClaim holding model files, mounted read-only.",
                "required": ["claimName"],
                "properties": {
                    "claimName": _str("PVC name.", minLength=1),
                    "mountPath": _str("Where to mount it.", default="/models", pattern="^/"),
                },
            },
            "replicas": {
                **_int(0, None, "Desired replicas (the scale subresource writes here)."),
                "default": 1,
            },
            "minReplicas": _int(0, None, "Lowest replica count; 0 lets the model scale to zero."),
            "maxReplicas": _int(1, None, "Highest replica count."),
            "autoscaling": {
                "type": "object",
                "description": "How the rendered HPA / KEDA ScaledObject scales this model.",
                "properties": {
                    "targetQueueDepth": _int(
                        1, None, "Requests waiting per replica before another is added."
                    ),
                },
            },
            "drain": {
                "type": "object",
                "description": "Graceful shutdown: no stream is cut on a rollout or scale-down.",
                "properties": {
                    "preStopSeconds": _int(0, 300, "Pause before the process is told to stop."),
                    "maxStreamSeconds": _int(1, 86400, "Longest stream allowed to finish."),
                },
            },
            "scheduling": {
                "type": "object",
                "description": "Where the engine pods may run.",
                "properties": {
                    "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
                    "tolerations": {
                        "type": "array",
                        "items": _free_object("A core/v1 Toleration."),
                    },
                    "affinity": _free_object("A core/v1 Affinity."),
                    "priorityClassName": {"type": "string"},
                },
            },
        },
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.minReplicas) || !has(self.maxReplicas)"
                " || self.minReplicas <= self.maxReplicas",
                "message": "minReplicas must not exceed maxReplicas",
            },
            {
                "rule": "self.engine != 'remote' || has(self.url) || has(self.urls)",
                "message": "a remote model needs url or urls",
            },
            {
                "rule": "self.engine == 'remote' || has(self.source)",
                "message": "a llamacpp or vllm model needs source",
            },
            {
                "rule": "self.engine != 'llamacpp' || !has(self.source)"
                " || self.source.matches('^(package://[A-Za-z_][A-Za-z0-9_]*/.+|file:///.+)$')",
                "message": "a llamacpp source is package://<package>/<file> or file:///<path>",
            },
            {
                "rule": "self.engine != 'remote' || !has(self.accelerator)",
                "message": "a remote model runs no pods: accelerator does not apply",
            },
        ],
    }


def condition_schema() -> Schema:
    return {
        "type": "object",
        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        "properties": {
            "type": _str("Ready, Progressing or Degraded.", maxLength=316),
            "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": _str("When status last changed.", format="date-time"),
            "reason": _str(
                "CamelCase reason.",
                maxLength=1024,
                minLength=1,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            ),
            "message": _str("Human-readable detail.", maxLength=32768),
        },
    }


def status_schema() -> Schema:
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "conditions": {
                "type": "array",
                "items": condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "replicas": _int(0, None, "Engine pods that exist."),
            "readyReplicas": _int(0, None, "Engine pods that are ready."),
            "selector": _str("Label selector of the engine pods (for the scale subresource)."),
            "endpoint": _str("Base URL to reach the model inside the cluster."),
        },
    }


def model_schema() -> Schema:
    return {
        "type": "object",
        "description": "A model served by cloudlet: engine pods and a Service, or a remote URL.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {MAX_MODEL_NAME}",
                "message": f"name must be at most {MAX_MODEL_NAME} characters "
                "(it names the engine Service, model-<name>)",
            },
            {
                "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "message": "name must be a DNS-1035 label: lower case, digits, '-', "
                "starting with a letter",
            },
        ],
    }


def printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {
            "name": "Status",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def model_crd() -> dict[str, Any]:
    """The CRD manifest, ready to apply."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "cloudlet",
                "app.kubernetes.io/part-of": "cloudlet",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": "model",
                "kind": KIND,
                "listKind": f"{KIND}List",
                "shortNames": ["clm"],
                "categories": ["cloudlet"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": model_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": printer_columns(),
                }
            ],
        },
    }


__all__ = ["API_VERSION", "model_crd", "model_schema", "spec_schema", "status_schema"]
