"""The stand-in's control plane: moto (STS, IAM, S3, SageMaker) behind its HTTPS proxy.

Both SageMaker SDK lines build their STS client with an explicit
``https://sts.{region}.amazonaws.com`` URL, so ``AWS_ENDPOINT_URL`` alone never reaches a local
server. moto's *proxy mode* does: clients send every AWS call through ``HTTPS_PROXY``, the
proxy terminates TLS with certificates signed by the CA that moto ships (``AWS_CA_BUNDLE``),
and answers from moto's in-memory backends. :class:`ControlPlane` runs that proxy in a thread
of this process, so the runtime server (``runtime.py``) can read the same backends through
:meth:`ControlPlane.lookup`.

What is moto and what is ours:

* moto: request parsing, every STS/IAM/S3 operation, SageMaker ``CreateModel`` /
  ``CreateEndpointConfig`` / ``CreateEndpoint`` / ``Describe*`` / ``Delete*`` / ``List*``,
  the TLS-intercepting proxy and its CA.
* ours, patched into moto's classes for as long as the control plane runs (and undone on
  :meth:`ControlPlane.stop`; nothing outside this process is touched):

  - the endpoint lifecycle: ``Creating`` -> ``InService`` (or ``Failed`` with a
    ``FailureReason``) after ``endpoint_delay_s`` -- or, for a container built for a newer
    CUDA than the host's NVIDIA driver runs (:mod:`common.local.drivers`), ``Failed`` after
    its start-up health-check timeout; ``Updating`` (``UpdateEndpoint``, which
    moto lacks); ``Deleting`` for ``delete_delay_s`` before the endpoint disappears. moto
    reports every endpoint ``InService`` at once and deletes at once.
  - instance types: moto's production-variant list predates ``ml.g5``/``ml.g6``/``ml.p4d``;
    the GPU families the recipes use are accepted too.
  - response shapes: moto answers ``VpcConfig: {}`` / ``DataCaptureConfig: {}`` where
    SageMaker leaves the member out; the v3 SDK's pydantic models reject the empty
    structures, so empty objects are dropped from SageMaker responses.
  - ``CreateEndpoint`` for a name that exists is refused, as SageMaker does (moto overwrote).
  - ``DeleteEndpoint`` while the endpoint is ``Creating`` or ``Updating`` is refused with
    SageMaker's "Cannot update in-progress endpoint" (moto deleted it at once).
  - the proxy's per-host certificates are written under the stand-in's work folder instead
    of moto's package folder, and the proxy binds 127.0.0.1 on a free port.
  - the proxy's access log goes to the ``common.local.proxy`` logger instead of stderr.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common.errors import RecipeError

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "EXECUTION_ROLE_NAME",
    "EXTRA_INSTANCE_TYPES",
    "ControlPlane",
    "LocalStackError",
    "default_failure_reason",
]

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's account for any access key that is not 12 digits
EXECUTION_ROLE_NAME = "AmazonSageMaker-ExecutionRole-local"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

_GPU_FAMILIES: dict[str, tuple[str, ...]] = {
    "g5": ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
           "48xlarge"),
    "g6": ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
           "48xlarge"),
    "g6e": ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "48xlarge"),
    "p4d": ("24xlarge",),
    "p4de": ("24xlarge",),
    "p5": ("48xlarge",),
    "p5e": ("48xlarge",),
    "inf2": ("xlarge", "8xlarge", "24xlarge", "48xlarge"),
    "trn1": ("2xlarge", "32xlarge"),
}
EXTRA_INSTANCE_TYPES: frozenset[str] = frozenset(
    f"ml.{family}.{size}" for family, sizes in _GPU_FAMILIES.items() for size in sizes
)
"""Instance types accepted in production variants on top of moto's own (older) list."""

_TRUST_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }],
})

# The S3 part of AmazonSageMakerFullAccess (buckets named like SageMaker's default bucket),
# as an inline policy: moto loads AWS managed policies only on request.
_ARTIFACTS_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
                   "s3:CreateBucket", "s3:GetBucketLocation"],
        "Resource": ["arn:aws:s3:::*SageMaker*", "arn:aws:s3:::*Sagemaker*",
                     "arn:aws:s3:::*sagemaker*"],
    }],
})

# Hosts the proxy intercepts and answers with moto; every other host is relayed as it is.
AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".aws")


class LocalStackError(RecipeError):
    """The local stand-in could not start, or was used in a way it does not support."""


def default_failure_reason(variant_name: str = "AllTraffic") -> str:
    """Return the ``FailureReason`` SageMaker gives a container that never answers its ping."""
    return (
        f"The primary container for production variant {variant_name} did not pass the ping "
        "health check. Please check CloudWatch logs for this endpoint."
    )


# --------------------------------------------------------------------------- patching


class _Patches:
    """Attribute replacements on moto's classes, undone in reverse order."""

    def __init__(self) -> None:
        self._undo: list[tuple[object, str, object]] = []

    def set(self, owner: object, name: str, value: object) -> None:
        self._undo.append((owner, name, owner.__dict__[name] if name in vars(owner)
                           else _MISSING))
        setattr(owner, name, value)

    def undo(self) -> None:
        while self._undo:
            owner, name, value = self._undo.pop()
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


_MISSING = object()


def _drop_empty_objects(value: Any) -> Any:
    """Return ``value`` with every ``{}`` member removed, at any depth."""
    if isinstance(value, dict):
        pruned = {k: _drop_empty_objects(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v != {}}
    if isinstance(value, list):
        return [_drop_empty_objects(v) for v in value]
    return value


# --------------------------------------------------------------------------- lifecycle


@dataclass
class _Lifecycle:
    """Our bookkeeping for one endpoint (moto's object keeps the status itself)."""

    variant_name: str
    image: str | None
    environment: dict[str, str]
    due_at: float = 0.0  # when Creating/Updating/Deleting ends (monotonic clock)
    pending: tuple[str | None, dict[str, str], str] | None = None  # an update's new model
    failure: str | None = None  # why the container of this create/update cannot start


@dataclass
class _FailRule:
    pattern: str
    reason: str | None


@dataclass
class _State:
    lifecycles: dict[tuple[str, str, str], _Lifecycle] = field(default_factory=dict)
    rules: list[_FailRule] = field(default_factory=list)


class _ProxyServer(ThreadingHTTPServer):
    """moto's proxy server; handler threads are joined on close (nothing is left running)."""

    daemon_threads = False
    block_on_close = True


class ControlPlane:
    """moto in proxy mode, in a thread of this process, with our SageMaker fixes.

    Args:
        workdir: a folder for the proxy's generated TLS certificates.
        endpoint_delay_s: how long a new endpoint stays ``Creating`` (and an update
            ``Updating``) before it is ``InService`` or ``Failed``.
        delete_delay_s: how long a deleted endpoint stays ``Deleting`` before it is gone
            (default: a tenth of ``endpoint_delay_s``, at most 1 s).
        fail_endpoints: endpoint names or shell patterns (``fnmatch``) that go ``Failed``
            instead of ``InService``, with :func:`default_failure_reason`.
        region: the region the execution role and :meth:`lookup` default to.
        port: the proxy's port on 127.0.0.1 (0 picks a free one).
        clock: the stand-in's clock (:mod:`common.local.clock`; any function returning
            seconds works): every delay above is measured in its (simulated) seconds.
        extensions: functions called as ``extension(plane, patch)`` once moto is patched,
            to add more fixes (``patch(owner, name, value)`` is undone on :meth:`stop`);
            the inference components and Application Auto Scaling come in this way
            (:mod:`common.local.autoscaling`).

    Only one control plane may run in a process at a time: moto's backends are global.
    """

    _active: ControlPlane | None = None
    _active_lock = threading.Lock()

    def __init__(
        self,
        workdir: str | Path,
        *,
        endpoint_delay_s: float = 3.0,
        delete_delay_s: float | None = None,
        fail_endpoints: Iterable[str] = (),
        region: str = DEFAULT_REGION,
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        extensions: Iterable[Callable[[ControlPlane, Callable[[object, str, object], None]],
                                      None]] = (),
    ) -> None:
        if endpoint_delay_s < 0:
            raise ValueError(f"endpoint_delay_s must be >= 0, got {endpoint_delay_s}")
        self.workdir = Path(workdir)
        self.endpoint_delay_s = float(endpoint_delay_s)
        self.delete_delay_s = (min(1.0, self.endpoint_delay_s / 10) if delete_delay_s is None
                               else float(delete_delay_s))
        self.region = region
        self.account_id = DEFAULT_ACCOUNT_ID
        self._port = port
        self._clock = clock
        self._extensions = tuple(extensions)
        self._state = _State(rules=[_FailRule(p, None) for p in fail_endpoints])
        self._lock = threading.RLock()
        self._patches = _Patches()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self._saved_log_level: int | None = None
        self.role_arn: str | None = None

    # ----------------------------------------------------------------- start / stop

    @property
    def address(self) -> tuple[str, int]:
        """The proxy's (host, port). Raises :class:`LocalStackError` before :meth:`start`."""
        if self._server is None:
            raise LocalStackError("the control plane is not running: call start() first")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The proxy URL for ``HTTPS_PROXY`` / ``HTTP_PROXY``."""
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def ca_bundle(self) -> str:
        """The CA certificate file (moto's) that signs the proxy's certificates."""
        from moto.moto_proxy.certificate_creator import CertificateCreator

        return CertificateCreator.cacert

    def start(self) -> None:
        """Patch moto, start the proxy on 127.0.0.1 and create the execution role.

        Raises:
            LocalStackError: another control plane runs in this process, ``openssl`` (which
                moto's proxy uses to sign per-host certificates) is missing, or the port is
                taken.
        """
        with ControlPlane._active_lock:
            if ControlPlane._active is not None:
                raise LocalStackError(
                    "a local stand-in is already running in this process (moto's backends "
                    "are global): stop it first, or reuse it"
                )
            ControlPlane._active = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        if shutil.which("openssl") is None:
            raise LocalStackError(
                "openssl was not found on PATH; moto's proxy uses it to sign a certificate "
                "for each AWS host. Install it (apt-get install openssl / brew install "
                "openssl) and start the stand-in again."
            )
        from moto.core.base_backend import BackendDict

        root_handlers = list(logging.root.handlers)
        from moto.moto_proxy import logger as proxy_logger
        from moto.moto_proxy.proxy3 import ProxyRequestHandler

        # Importing moto's proxy calls logging.basicConfig(stream=sys.stdout): take that
        # handler off the root logger again, so library warnings do not land on stdout.
        for handler in [h for h in logging.root.handlers if h not in root_handlers]:
            logging.root.removeHandler(handler)

        BackendDict.reset()
        self._saved_log_level = proxy_logger.level
        proxy_logger.setLevel(logging.WARNING)  # it logs every request at INFO
        self._patch_certificates()
        self._patch_passthrough(ProxyRequestHandler)
        self._patch_access_log(ProxyRequestHandler)
        self._patch_sagemaker()
        for extension in self._extensions:
            extension(self, self._patches.set)
        try:
            self._server = _ProxyServer(("127.0.0.1", self._port), ProxyRequestHandler)
        except OSError as exc:
            raise LocalStackError(
                f"cannot listen on 127.0.0.1:{self._port} ({exc}); pick another port or 0 "
                "for a free one"
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sagemaker-local-control-plane",
            kwargs={"poll_interval": 0.1}, daemon=True,
        )
        self._thread.start()
        self.role_arn = self._create_execution_role()

    def stop(self) -> None:
        """Stop the proxy (joining its threads), undo every patch and reset moto's state.

        Safe to call twice, and after a failed :meth:`start`.
        """
        if self._thread is not None:  # shutdown() waits for a serve_forever() that started
            if self._server is not None:
                self._server.shutdown()
            self._thread.join()
            self._thread = None
        if self._server is not None:
            self._server.server_close()  # joins the request threads
            self._server = None
        self._patches.undo()
        if self._saved_log_level is not None:
            from moto.moto_proxy import logger as proxy_logger

            proxy_logger.setLevel(self._saved_log_level)
            self._saved_log_level = None
        with ControlPlane._active_lock:
            if ControlPlane._active is self:
                from moto.core.base_backend import BackendDict

                BackendDict.reset()
                ControlPlane._active = None

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- clients

    def client(self, service: str, region: str | None = None) -> Any:
        """Return a boto3 client that reaches this control plane (dummy credentials).

        It goes through the proxy explicitly, so it works without :meth:`LocalStack.apply_env`.
        """
        import boto3
        from botocore.config import Config

        return boto3.client(
            service, region_name=region or self.region, verify=self.ca_bundle,
            config=Config(proxies={"https": self.url, "http": self.url},
                          retries={"mode": "standard", "max_attempts": 2}),
            **DUMMY_CREDENTIALS,
        )

    def _create_execution_role(self) -> str:
        iam = self.client("iam")
        role = iam.create_role(
            RoleName=EXECUTION_ROLE_NAME,
            AssumeRolePolicyDocument=_TRUST_POLICY,
            Description="Execution role of the local SageMaker stand-in (moto)",
        )
        iam.put_role_policy(RoleName=EXECUTION_ROLE_NAME, PolicyName="sagemaker-artifacts",
                            PolicyDocument=_ARTIFACTS_POLICY)
        return str(role["Role"]["Arn"])

    # ----------------------------------------------------------------- the runtime's view

    def lookup(self, endpoint_name: str) -> Any:
        """Return what the runtime server needs to know about an endpoint, or ``None``.

        Returns:
            ``common.local.runtime.EndpointInfo(name, status, image, environment, variant)``
            for an endpoint that exists in this account (the control plane's region first,
            then any other), with the image and environment of the model it was created (or
            last updated) with -- deleting the model or the endpoint configuration afterwards
            does not change a running endpoint, as on SageMaker. ``None`` when there is no
            such endpoint (or it finished deleting).
        """
        from common.local.runtime import EndpointInfo

        for backend in self._backends():
            with self._lock:
                self._advance(backend)
                endpoint = backend.endpoints.get(endpoint_name)
                if endpoint is None:
                    continue
                life = self._state.lifecycles.get(self._key(backend, endpoint_name))
                if life is None:  # created before our patches (cannot happen through them)
                    life = _Lifecycle("AllTraffic", *self._model_of_config(
                        backend, endpoint.endpoint_config_name)[:2])
                environment = dict(life.environment)
                if "HF_MODEL_ID" not in environment:  # LMI: the model is in serving.properties
                    served = self._served_model(backend, endpoint.endpoint_config_name)
                    if served:
                        environment["HF_MODEL_ID"] = served
                return EndpointInfo(name=endpoint_name, status=endpoint.endpoint_status,
                                    image=life.image or "", environment=environment,
                                    variant=life.variant_name)
        return None

    def _served_model(self, backend: Any, endpoint_config_name: str) -> str | None:
        """The model an LMI endpoint serves, from its ``model.tar.gz``'s serving.properties
        and the uploaded ``config.json`` in moto's S3 (see :mod:`common.local.served_model`)."""
        from moto.backends import get_backend
        from moto.s3.exceptions import MissingBucket, MissingKey

        from common.local.served_model import served_model_id

        config = backend.endpoint_configs.get(endpoint_config_name)
        variants = config.production_variants if config is not None else []
        model = backend._models.get(variants[0].get("ModelName")) if variants else None
        if model is None:
            return None
        container = model.primary_container or (model.containers or [{}])[0]
        s3 = get_backend("s3")[self.account_id]["global"]

        def read(bucket: str, key: str) -> bytes | None:
            try:
                stored = s3.get_object(bucket, key)
            except (MissingBucket, MissingKey):
                return None
            return None if stored is None else bytes(stored.value)

        return served_model_id(container.get("ModelDataUrl"), read)

    def endpoint_status(self, endpoint_name: str) -> str | None:
        """Return the endpoint's current status, or ``None`` when it does not exist."""
        for backend in self._backends():
            with self._lock:
                self._advance(backend)
                endpoint = backend.endpoints.get(endpoint_name)
                if endpoint is not None:
                    return str(endpoint.endpoint_status)
        return None

    # ----------------------------------------------------------------- faults

    def fail_endpoint(self, name: str, reason: str | None = None) -> None:
        """Make endpoints named ``name`` (a name or an ``fnmatch`` pattern) go ``Failed``.

        An endpoint that is ``Creating`` or ``Updating`` fails when its delay ends; one that
        is ``InService`` fails now; later endpoints with a matching name fail instead of
        coming up. ``reason`` becomes the ``FailureReason`` (default:
        :func:`default_failure_reason`).
        """
        with self._lock:
            self._state.rules.append(_FailRule(name, reason))
            for backend in self._backends():
                self._advance(backend)
                for endpoint_name, endpoint in backend.endpoints.items():
                    if (endpoint.endpoint_status == "InService"
                            and fnmatch.fnmatchcase(endpoint_name, name)):
                        life = self._state.lifecycles.get(self._key(backend, endpoint_name))
                        variant = life.variant_name if life else "AllTraffic"
                        self._set_status(endpoint, "Failed",
                                         reason or default_failure_reason(variant))

    def clear_faults(self) -> None:
        """Forget every :meth:`fail_endpoint` rule (endpoints already failed stay failed)."""
        with self._lock:
            self._state.rules.clear()

    def _failure_for(self, endpoint_name: str, variant_name: str) -> str | None:
        for rule in reversed(self._state.rules):
            if fnmatch.fnmatchcase(endpoint_name, rule.pattern):
                return rule.reason or default_failure_reason(variant_name)
        return None

    # ----------------------------------------------------------------- internals

    def _backends(self) -> Iterator[Any]:
        """moto's SageMaker backends of our account: our region first, then the others."""
        from moto.backends import get_backend

        backends = get_backend("sagemaker")
        if self.account_id not in backends:
            return
        per_region = backends[self.account_id]
        # Only the regions already in use: `in per_region` is true for every known region.
        created = set(per_region.keys())
        for region in [self.region, *sorted(created - {self.region})]:
            if region in created:
                yield per_region[region]

    @staticmethod
    def _key(backend: Any, endpoint_name: str) -> tuple[str, str, str]:
        return backend.account_id, backend.region_name, endpoint_name

    @staticmethod
    def _set_status(endpoint: Any, status: str, reason: str | None = None) -> None:
        from moto.core.utils import utcnow

        endpoint.endpoint_status = status
        endpoint.failure_reason = reason
        endpoint.last_modified_time = utcnow()

    def _advance(self, backend: Any) -> None:
        """Move every endpoint of ``backend`` whose delay has passed to its next status."""
        now = self._clock()
        for name, endpoint in list(backend.endpoints.items()):
            key = self._key(backend, name)
            life = self._state.lifecycles.get(key)
            if life is None or now < life.due_at:
                continue
            status = endpoint.endpoint_status
            if status in ("Creating", "Updating"):
                if life.pending is not None:
                    life.image, life.environment, life.variant_name = life.pending
                    life.pending = None
                reason = life.failure or self._failure_for(name, life.variant_name)
                self._set_status(endpoint, "Failed" if reason else "InService", reason)
            elif status == "Deleting":
                del backend.endpoints[name]
                del self._state.lifecycles[key]

    def _schedule_start(self, backend: Any, life: _Lifecycle, endpoint_config_name: str
                        ) -> None:
        """Set when ``life``'s create or update ends: after the endpoint delay, or -- when the
        container cannot start on the host's driver (:mod:`common.local.drivers`) -- after its
        start-up health check, with SageMaker's failure reason."""
        from common.local.drivers import start_failure

        config = backend.endpoint_configs.get(endpoint_config_name)
        variants = config.production_variants if config is not None else []
        image, _environment, variant_name = self._model_of_config(backend, endpoint_config_name)
        failure = start_failure(
            image, variants[0] if variants else {}, subject=f"variant {variant_name}",
            health_check_s=(variants[0].get("ContainerStartupHealthCheckTimeoutInSeconds")
                            if variants else None),
            default_wait_s=self.endpoint_delay_s)
        life.failure = failure.reason if failure else None
        wait = max(self.endpoint_delay_s, failure.wait_s) if failure else self.endpoint_delay_s
        life.due_at = self._clock() + wait

    def _model_of_config(self, backend: Any, endpoint_config_name: str
                         ) -> tuple[str | None, dict[str, str], str]:
        """(image, environment, variant name) of the first variant of a configuration."""
        config = backend.endpoint_configs.get(endpoint_config_name)
        variants = config.production_variants if config is not None else []
        if not variants:
            return None, {}, "AllTraffic"
        variant = variants[0]
        model = backend._models.get(variant.get("ModelName"))
        container: dict[str, Any] = {}
        if model is not None:
            container = model.primary_container or (model.containers or [{}])[0]
        return (container.get("Image"), dict(container.get("Environment") or {}),
                variant.get("VariantName", "AllTraffic"))

    def _patch_passthrough(self, handler_cls: type) -> None:
        """Relay every non-AWS host untouched (pip's index, say) instead of intercepting it.

        A notebook's ``%pip install`` runs with the stand-in's ``HTTPS_PROXY``; moto would
        answer its TLS with a certificate of its own CA, which pip does not trust.
        """
        original = handler_cls.do_CONNECT

        def do_connect(handler) -> None:
            host, _, port = handler.path.rpartition(":")
            if not host.endswith(AWS_HOST_SUFFIXES):
                try:
                    handler.connect_relay((host, int(port or 443)))
                except (BrokenPipeError, ConnectionResetError) as exc:
                    # One side hung up mid-relay (an installer closing a spare connection):
                    # the relay ends, as a proxy's would; no traceback on the terminal.
                    logging.getLogger("common.local.proxy").debug(
                        "relay to %s closed: %s", handler.path, exc)
                return
            original(handler)

        self._patches.set(handler_cls, "do_CONNECT", do_connect)

    def _patch_access_log(self, handler_cls: type) -> None:
        """Send the proxy's access log to the ``common.local.proxy`` logger at INFO.

        ``http.server`` writes one line per request straight to stderr (``"CONNECT
        pypi.org:443 HTTP/1.0" 200 -`` for each connection of a notebook's ``%pip``);
        :class:`common.local.logfile.BackgroundLog` decides where the logger's lines go.
        """
        from common.local.logfile import PROXY_LOGGER

        logger = logging.getLogger(PROXY_LOGGER)

        def log_message(handler, format: str, *args: Any) -> None:
            logger.info("%s - - [%s] %s", handler.address_string(),
                        handler.log_date_time_string(), format % args)

        self._patches.set(handler_cls, "log_message", log_message)

    def _patch_certificates(self) -> None:
        from moto.moto_proxy.certificate_creator import CertificateCreator

        certdir = self.workdir / "proxy-certs"
        certdir.mkdir(parents=True, exist_ok=True)
        template = Path(CertificateCreator.certdir) / "req.conf.tmpl"
        shutil.copyfile(template, certdir / "req.conf.tmpl")
        self._patches.set(CertificateCreator, "certdir", f"{certdir}/")

    def _patch_sagemaker(self) -> None:
        from moto.sagemaker import models
        from moto.sagemaker.exceptions import ValidationError
        from moto.sagemaker.responses import SageMakerResponse

        plane = self
        backend_cls = models.SageMakerModelBackend
        original = {name: getattr(backend_cls, name) for name in
                    ("create_endpoint", "describe_endpoint", "delete_endpoint",
                     "list_endpoints")}
        original_validate = models.FakeEndpointConfig.validate_instance_type
        original_call_action = SageMakerResponse.call_action

        def validate_instance_type(config: Any, instance_type: str) -> None:
            if instance_type not in EXTRA_INSTANCE_TYPES:
                original_validate(config, instance_type)

        def create_endpoint(backend: Any, endpoint_name: str, endpoint_config_name: str,
                            tags: Any) -> Any:
            with plane._lock:
                plane._advance(backend)
                if endpoint_name in backend.endpoints:
                    arn = models.FakeEndpoint.arn_formatter(
                        endpoint_name, backend.account_id, backend.region_name)
                    raise ValidationError(
                        message=f'Cannot create already existing endpoint "{arn}".')
                endpoint = original["create_endpoint"](
                    backend, endpoint_name, endpoint_config_name, tags)
                image, environment, variant = plane._model_of_config(
                    backend, endpoint_config_name)
                life = _Lifecycle(variant_name=variant, image=image, environment=environment)
                plane._schedule_start(backend, life, endpoint_config_name)
                plane._state.lifecycles[plane._key(backend, endpoint_name)] = life
                plane._set_status(endpoint, "Creating")
                return endpoint

        def describe_endpoint(backend: Any, endpoint_name: str) -> Any:
            with plane._lock:
                plane._advance(backend)
                return original["describe_endpoint"](backend, endpoint_name)

        def list_endpoints(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with plane._lock:
                plane._advance(backend)
                return original["list_endpoints"](backend, *args, **kwargs)

        def delete_endpoint(backend: Any, endpoint_name: str) -> None:
            with plane._lock:
                plane._advance(backend)
                endpoint = backend.endpoints.get(endpoint_name)
                life = plane._state.lifecycles.get(plane._key(backend, endpoint_name))
                if endpoint is not None and endpoint.endpoint_status in ("Creating", "Updating"):
                    # SageMaker refuses it until the endpoint settles (InService or Failed).
                    raise ValidationError(
                        message=f"Cannot update in-progress endpoint \"{endpoint.arn}\".")
                if endpoint is None or life is None or plane.delete_delay_s <= 0:
                    original["delete_endpoint"](backend, endpoint_name)
                    plane._state.lifecycles.pop(plane._key(backend, endpoint_name), None)
                    return
                if endpoint.endpoint_status != "Deleting":
                    life.due_at = plane._clock() + plane.delete_delay_s
                    life.pending = None
                    plane._set_status(endpoint, "Deleting")

        def update_endpoint(backend: Any, endpoint_name: str,
                            endpoint_config_name: str) -> Any:
            with plane._lock:
                plane._advance(backend)
                endpoint = backend.endpoints.get(endpoint_name)
                if endpoint is None:
                    original["describe_endpoint"](backend, endpoint_name)  # raises not found
                if endpoint.endpoint_status != "InService":
                    raise ValidationError(
                        message=f"Cannot update in-progress endpoint \"{endpoint.arn}\".")
                if endpoint_config_name not in backend.endpoint_configs:
                    backend.describe_endpoint_config(endpoint_config_name)  # raises
                life = plane._state.lifecycles.setdefault(
                    plane._key(backend, endpoint_name), _Lifecycle("AllTraffic", None, {}))
                life.pending = plane._model_of_config(backend, endpoint_config_name)
                plane._schedule_start(backend, life, endpoint_config_name)
                endpoint.endpoint_config_name = endpoint_config_name
                plane._set_status(endpoint, "Updating")
                return endpoint

        def update_endpoint_action(response: Any) -> Any:
            from moto.core.responses import ActionResult

            endpoint = update_endpoint(
                response.sagemaker_backend, response._get_param("EndpointName"),
                response._get_param("EndpointConfigName"))
            return ActionResult({"EndpointArn": endpoint.arn})

        def call_action(response: Any) -> Any:
            status, headers, body = original_call_action(response)
            if status == 200 and body:
                text = body.decode() if isinstance(body, bytes) else body
                try:
                    document = json.loads(text)
                except ValueError:
                    return status, headers, body
                body = json.dumps(_drop_empty_objects(document))
                for name in [h for h in headers if h.lower() == "content-length"]:
                    headers[name] = str(len(body.encode()))
            return status, headers, body

        self._patches.set(models.FakeEndpointConfig, "validate_instance_type",
                          validate_instance_type)
        self._patches.set(backend_cls, "create_endpoint", create_endpoint)
        self._patches.set(backend_cls, "describe_endpoint", describe_endpoint)
        self._patches.set(backend_cls, "list_endpoints", list_endpoints)
        self._patches.set(backend_cls, "delete_endpoint", delete_endpoint)
        self._patches.set(backend_cls, "update_endpoint", update_endpoint)
        self._patches.set(SageMakerResponse, "update_endpoint", update_endpoint_action)
        self._patches.set(SageMakerResponse, "call_action", call_action)
