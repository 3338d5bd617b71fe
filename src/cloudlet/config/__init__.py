"""The typed spec: cloudlet.yaml, overridden by CLOUDLET_* environment variables and CLI flags."""

from cloudlet.config.loader import DEFAULT_SPEC_FILE, load_spec
from cloudlet.config.spec import ModelSpec, ServerSpec, Spec

__all__ = ["DEFAULT_SPEC_FILE", "ModelSpec", "ServerSpec", "Spec", "load_spec"]
