"""The local SageMaker stand-in: real clients and wire protocols, local servers, no AWS account.

Modules (import the one you need; this package imports nothing heavy):

* :mod:`common.local.eventstream` -- the ``application/vnd.amazon.eventstream`` encoder.
* :mod:`common.local.backends` -- what generates tokens (:class:`~common.local.backends.Backend`
  protocol, the canned :class:`~common.local.backends.ReplayBackend`).
* :mod:`common.local.containers` -- how TGI and LMI parse a request body and frame their output.
* :mod:`common.local.runtime` -- the ``sagemaker-runtime`` HTTP server (data plane, faults,
  request log, frame timings).
* :mod:`common.local.controlplane`, :mod:`common.local.hub`, :mod:`common.local.stack` -- moto,
  the offline Hugging Face snapshot, and the ``LocalStack`` wrapper that starts everything.
* :mod:`common.local.hubapi` -- the local Hub API (``HF_ENDPOINT``) that serves those
  snapshots: ``auth_check``, file list, downloads; ``--gated-denied``.
* :mod:`common.local.quotas` -- Service Quotas for SageMaker and ``CreateEndpoint``'s
  ``ResourceLimitExceeded`` (``--quota``).
* :mod:`common.local.clock` -- the one clock every simulated delay asks (time scale, manual).
* :mod:`common.local.components`, :mod:`common.local.components_api`,
  :mod:`common.local.autoscaling` -- the scaling model: inference components, their copies and
  instances, routing with a queue per copy, CloudWatch metrics and alarms, and Application
  Auto Scaling (see DESIGN.md, "Scaling model").

Nothing outside the tests and the demo command imports this package: notebooks reach the
stand-in only through environment variables, exactly as they reach real SageMaker.
"""
