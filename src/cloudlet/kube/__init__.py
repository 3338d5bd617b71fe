"""cloudlet on Kubernetes: the same spec from a laptop to a cluster.

- :mod:`~cloudlet.kube.render`: spec → manifests (the Model CRD, the operator, the gateway,
  one Model per model, autoscalers); pure, used by ``cloudlet deploy --render``;
- :mod:`~cloudlet.kube.apply`: server-side apply of those manifests (``--apply``);
- :mod:`~cloudlet.kube.operator`: kopf handlers reconciling each Model into an engine Deployment
  and Service (:mod:`~cloudlet.kube.engine`) with status (:mod:`~cloudlet.kube.status`);
- :mod:`~cloudlet.kube.discovery`: the ready engine endpoints per model, from EndpointSlices,
  for the gateway.

Only this package imports kopf or a Kubernetes client, and only its ``client``, ``apply``,
``operator``, ``reconcile`` and ``discovery`` modules do: rendering needs neither. Importing
this package does nothing.
"""
