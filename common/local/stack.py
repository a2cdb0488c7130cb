"""`LocalStack`: the whole local SageMaker stand-in, started and stopped as one thing.

It starts the control plane (moto behind its proxy, :mod:`common.local.controlplane`), the
``sagemaker-runtime`` server (:mod:`common.local.runtime`) with a model backend, writes the
tiny Hugging Face snapshots (:mod:`common.local.hub`) into a fresh cache and serves them --
and any Hugging Face cache of the user's (``hub_caches``, read-only) -- with a small local Hub
API (:mod:`common.local.hubapi`, ``HF_ENDPOINT``), and makes a fresh
``IPYTHONDIR`` (so ``%store`` data stays out of the user's profile). :attr:`LocalStack.env`
holds every variable a shell or a notebook kernel needs to reach it; notebooks and recipe
code see nothing else of the stand-in.

Example::

    with LocalStack(endpoint_delay_s=1, ttft_s=0) as stack:
        stack.apply_env()          # os.environ for this process and the kernels it starts
        ...                        # run notebooks, boto3, the SageMaker SDK
        stack.requests()           # what the runtime server received
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.local import served_model
from common.local.clock import Clock, ScaledClock
from common.local.components import CopyPace, Timings
from common.local.controlplane import DEFAULT_REGION, ControlPlane, LocalStackError
from common.local.hub import VARIANT_REPOS, write_tiny_snapshot

__all__ = [
    "BACKENDS",
    "DUMMY_HF_TOKEN",
    "HEADLESS_NOTEBOOK_ENV",
    "UNSET_VARIABLES",
    "LocalStack",
    "LocalStackError",
    "hub_cache_folder",
    "make_backend",
]

DUMMY_HF_TOKEN = "hf_dummy_local_token"  # obviously fake; the notebooks insist on a token

# What an unattended notebook run (nbval, the demo) adds to the stand-in's environment: the
# live view prints instead of drawing widgets no one sees, and the guarded clean-up cell runs.
# Not part of LocalStack.env: a reader's own Jupyter keeps widgets and a guarded clean-up.
HEADLESS_NOTEBOOK_ENV: dict[str, str] = {"COMMON_DISPLAY": "print", "RECIPES_CLEAN_UP": "1"}

BACKENDS: dict[str, tuple[str, str]] = {
    "replay": ("common.local.backends", "ReplayBackend"),
    "model": ("common.local.model_backend", "ModelBackend"),
}
"""Backend name -> (module, class). ``replay`` takes the pacing options; others take none."""

UNSET_VARIABLES: tuple[str, ...] = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
)
"""Variables that would send a client past the stand-in (to a real profile, real endpoint,
another CA); :meth:`LocalStack.apply_env` removes them while the stand-in runs."""


def make_backend(name: str, *, ttft_s: float | None = None,
                 tokens_per_s: float | None = None) -> Any:
    """Build the model backend called ``name`` (a key of :data:`BACKENDS`).

    Args:
        name: ``"replay"`` (the canned answer, paced by ``ttft_s`` / ``tokens_per_s``; None
            keeps its defaults) or ``"model"`` (a real small model on the CPU).

    Returns:
        The backend object (``common.local.backends.Backend``: ``name``, ``label``,
        ``generate(request)``).

    Raises:
        LocalStackError: an unknown name, or the backend's module is missing.
        ValueError: pacing options given to a backend that does not take them.
        common.local.model_backend.ModelBackendUnavailable: the model backend's libraries or
            model file are not installed (its message says how to install them).
    """
    if name not in BACKENDS:
        raise LocalStackError(
            f"unknown backend {name!r}: choose one of {', '.join(sorted(BACKENDS))}")
    module_name, class_name = BACKENDS[name]
    pacing = {key: value for key, value in (("ttft_s", ttft_s), ("tokens_per_s", tokens_per_s))
              if value is not None}
    if name != "replay" and pacing:
        raise ValueError(
            f"the {name!r} backend runs at the model's own speed: leave out "
            f"{' and '.join(pacing)} (they pace the replay backend only)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise LocalStackError(
            f"the {name!r} backend's module {module_name} is not available in this checkout; "
            f"use --backend {'replay' if name != 'replay' else 'model'} or restore the file"
        ) from exc
    backend_class = getattr(module, class_name)
    return backend_class(**pacing)


def hub_cache_folder(path: str | os.PathLike[str]) -> Path:
    """Return the hub cache folder of ``path``: ``path`` itself when it holds ``models--*``
    folders (``HF_HUB_CACHE``, ``~/.cache/huggingface/hub``), or its ``hub/`` (an
    ``HF_HOME``).

    Raises:
        LocalStackError: no such folder, or no model repository in it.
    """
    folder = Path(path).expanduser()
    for candidate in (folder, folder / "hub"):
        if candidate.is_dir() and any(candidate.glob("models--*--*")):
            return candidate.resolve()
    raise LocalStackError(
        f"{folder} is not a Hugging Face hub cache: it holds no models--OWNER--NAME folder "
        "(nor does its hub/). Give the folder huggingface_hub downloads into -- "
        "$HF_HUB_CACHE, by default ~/.cache/huggingface/hub -- after downloading the model's "
        "config and tokenizer files, e.g. `hf download OWNER/NAME --include '*.json' "
        "'*.jinja'`.")


class LocalStack:
    """The local SageMaker stand-in: control plane, runtime server, offline hub, IPython dir.

    Args:
        backend: ``"replay"`` (default) or ``"model"``; see :func:`make_backend`.
        endpoint_delay_s: how long endpoints stay ``Creating`` before ``InService``.
        ttft_s: the replay backend's time to first token (None: its default).
        tokens_per_s: the replay backend's pace (None: its default).
        workdir: where the HF cache, the IPython dir and the proxy certificates go; a fresh
            temporary folder (removed on :meth:`stop`) when None.
        fail_endpoints: endpoint names or patterns that go ``Failed`` instead of
            ``InService``.
        port: the control plane proxy's port (0: a free one).
        runtime_port: the runtime server's port (0: a free one).
        region: the AWS region the clients are told to use.
        hf_repos: the model repositories written into the offline HF cache.
        hf_allow_patterns: write only the matching files into the cache (None: all of them).
        quotas: ``{instance_type: N}``: the account's endpoint quota for these instance types
            (every other GPU type has :data:`common.local.quotas.APPLIED_VALUE`); ``None``
            for N leaves the type without an applied value (AWS's default, 0, applies).
        gated_denied: model ids whose gated repository refuses every token, as the Hub
            refuses a token whose account has not accepted the licence.
        time_scale: simulated seconds per real second for every simulated delay (endpoint
            creation, instance provisioning, copy start-up, metric periods, alarms,
            cooldowns, idle release); 1 keeps real time. ``endpoint_delay_s`` is simulated.
        clock: the clock itself (e.g. a ``ManualClock`` in tests); overrides ``time_scale``.
        copy_concurrency: streams one inference-component copy serves at once (None: from
            the container's settings; see ``common.local.components.copy_concurrency_from``).
        copy_ttft_s / copy_tokens_per_s: a floor on the pace of each stream an
            inference-component copy serves, in real seconds (None: the backend's own pace),
            so a concurrency sweep queues (and shows a knee) even with an unpaced backend.
        timings: the scaling model's simulated durations (``common.local.components.Timings``:
            instance provisioning, copy start-up, idle release, component deletion).
        fail_components: inference-component names or patterns that go ``Failed``.
        invoke_timeout_s: real seconds a container has to answer ``InvokeEndpoint`` (60, as
            on SageMaker; ``common.local.runtime.INVOKE_TIMEOUT_S``).
        hub_caches: Hugging Face hub cache folders of the user's (``~/.cache/huggingface/hub``,
            or an ``HF_HOME`` holding ``hub/``) whose models the hub serves too, before its
            own -- config and tokenizer files are enough, weights may be absent. Never
            written. See :meth:`add_hub_cache`.

    Everything binds 127.0.0.1. Use it as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(
        self,
        *,
        backend: str = "replay",
        endpoint_delay_s: float = 3.0,
        ttft_s: float | None = None,
        tokens_per_s: float | None = None,
        workdir: str | os.PathLike[str] | None = None,
        fail_endpoints: Iterable[str] = (),
        port: int = 0,
        runtime_port: int = 0,
        region: str = DEFAULT_REGION,
        hf_repos: Sequence[str] = VARIANT_REPOS,
        hf_allow_patterns: Sequence[str] | None = None,
        quotas: Mapping[str, float | None] | None = None,
        gated_denied: Iterable[str] = (),
        time_scale: float = 1.0,
        clock: Clock | None = None,
        copy_concurrency: int | None = None,
        copy_ttft_s: float | None = None,
        copy_tokens_per_s: float | None = None,
        timings: Timings | None = None,
        fail_components: Iterable[str] = (),
        invoke_timeout_s: float | None = None,
        hub_caches: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.hub_caches = [hub_cache_folder(c) for c in hub_caches]
        self.backend_name = backend
        self.invoke_timeout_s = invoke_timeout_s
        self.clock: Clock = clock if clock is not None else ScaledClock(time_scale)
        self.time_scale = self.clock.time_scale
        self.copy_concurrency = copy_concurrency
        self.copy_pace = CopyPace(copy_ttft_s, copy_tokens_per_s)
        self.timings = timings or Timings()
        self._fail_components = tuple(fail_components)
        self.scaling: Any = None
        self.endpoint_delay_s = endpoint_delay_s
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.region = region
        self.hf_repos = tuple(hf_repos)
        self.hf_allow_patterns = hf_allow_patterns
        self.quota_overrides = dict(quotas or {})
        self.gated_denied = tuple(gated_denied)
        self.quotas: Any = None
        self.hub_api: Any = None
        self._fail_endpoints = tuple(fail_endpoints)
        self._port = port
        self._runtime_port = runtime_port
        self._given_workdir = None if workdir is None else Path(workdir)
        self.workdir: Path | None = None
        self.backend: Any = None
        self.control_plane: ControlPlane | None = None
        self.runtime: Any = None
        self._env: dict[str, str] | None = None
        self._saved_env: dict[str, str | None] | None = None

    # ----------------------------------------------------------------- start / stop

    @property
    def running(self) -> bool:
        """Whether :meth:`start` has completed and :meth:`stop` has not run since."""
        return self._env is not None

    def start(self) -> LocalStack:
        """Start everything; returns ``self``.

        Raises:
            LocalStackError: already running, a port is taken, ``openssl`` is missing, the
                backend is unknown or missing, or another stand-in runs in this process.
        """
        if self.running:
            raise LocalStackError("this LocalStack is already running")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.backend = make_backend(self.backend_name, ttft_s=self.ttft_s,
                                    tokens_per_s=self.tokens_per_s)
        if self._given_workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="sagemaker-local-"))
        else:
            self.workdir = self._given_workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        hf_home = self.workdir / "huggingface"
        for repo_id in self.hf_repos:
            write_tiny_snapshot(hf_home / "hub", repo_id,
                                allow_patterns=self.hf_allow_patterns)
        ipython_dir = self.workdir / "ipython"
        ipython_dir.mkdir(exist_ok=True)
        aws_dir = self.workdir / "aws"
        aws_dir.mkdir(exist_ok=True)
        for name in ("config", "credentials"):  # empty: the user's ~/.aws stays out of it
            (aws_dir / name).touch()

        from common.local.autoscaling import ScalingSimulator
        from common.local.controlplane import DEFAULT_ACCOUNT_ID, EXTRA_INSTANCE_TYPES
        from common.local.hubapi import HubApiServer
        from common.local.iam_simulator import install as install_iam_simulator
        from common.local.quotas import QuotaBook
        from common.local.quotas import install as install_quotas
        from common.local.tagging import install_tagging

        self.quotas = QuotaBook(EXTRA_INSTANCE_TYPES, self.quota_overrides,
                                region=self.region, account_id=DEFAULT_ACCOUNT_ID)
        quotas = self.quotas
        self.scaling = scaling = ScalingSimulator(
            self.clock, timings=self.timings, copy_concurrency=self.copy_concurrency,
            copy_pace=self.copy_pace, fail_components=self._fail_components, quotas=quotas)
        self.control_plane = ControlPlane(
            self.workdir, endpoint_delay_s=self.endpoint_delay_s,
            delete_delay_s=self._delete_delay_s(),
            fail_endpoints=self._fail_endpoints, region=self.region, port=self._port,
            clock=self.clock, extensions=[
                self.scaling.install,
                # Listed after the scaling model, so the quota is checked first.
                lambda plane, patch: install_quotas(patch, quotas,
                                                    fleet_size=scaling.fleet_size),
                install_iam_simulator,
                # After the scaling model too: the components' tags need its manager.
                lambda plane, patch: install_tagging(plane, self.scaling.manager, patch),
            ])
        self.control_plane.start()
        self.hub_api = HubApiServer(hf_home / "hub", gated_denied=self.gated_denied,
                                    extra_caches=self.hub_caches).start()
        served_model.use_hub(self.hub_api.snapshot)

        from common.local.runtime import INVOKE_TIMEOUT_S, RuntimeServer

        self.runtime = RuntimeServer(
            self.control_plane.lookup, backend=self.backend, host="127.0.0.1",
            port=self._runtime_port, router=self.scaling.route,
            invoke_timeout_s=(INVOKE_TIMEOUT_S if self.invoke_timeout_s is None
                              else self.invoke_timeout_s))
        self.runtime.start()
        self.scaling.start()

        proxy = self.control_plane.url
        no_proxy = "127.0.0.1,localhost,::1"
        self._env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_CONFIG_FILE": str(aws_dir / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CA_BUNDLE": self.control_plane.ca_bundle,
            "HTTPS_PROXY": proxy,
            "HTTP_PROXY": proxy,
            "https_proxy": proxy,
            "http_proxy": proxy,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.runtime.url,
            "SAGEMAKER_EXECUTION_ROLE_ARN": str(self.control_plane.role_arn),
            "HF_ENDPOINT": self.hub_api.url,
            "HF_HOME": str(hf_home),
            "HF_HUB_CACHE": str(hf_home / "hub"),
            "HF_TOKEN": DUMMY_HF_TOKEN,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "IPYTHONDIR": str(ipython_dir),
        }

    def _delete_delay_s(self) -> float:
        """A tenth of the endpoint delay, at most one real second (in simulated seconds)."""
        one_real_second = self.clock.time_scale or float("inf")  # a manual clock: no cap
        return min(one_real_second, self.endpoint_delay_s / 10)

    def stop(self) -> None:
        """Stop the servers, restore ``os.environ`` if :meth:`apply_env` changed it, and
        remove the temporary work folder. Safe to call twice."""
        self.restore_env()
        if self.scaling is not None:
            self.scaling.stop()
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        if self.hub_api is not None:
            self.hub_api.stop()
            self.hub_api = None
            served_model.use_hub(None)
        self.scaling = None
        if self._given_workdir is None and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        self._env = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- environment

    @property
    def env(self) -> dict[str, str]:
        """The variables to export (a copy); see also :data:`UNSET_VARIABLES`.

        Raises:
            LocalStackError: before :meth:`start`.
        """
        return dict(self._require(self._env))

    def apply_env(self) -> None:
        """Export :attr:`env` into ``os.environ`` (and remove :data:`UNSET_VARIABLES`).

        Kernels and subprocesses started afterwards inherit it. :meth:`restore_env` (or
        :meth:`stop`) puts the previous values back.
        """
        env = self.env
        if self._saved_env is None:
            self._saved_env = {name: os.environ.get(name)
                               for name in [*env, *UNSET_VARIABLES]}
        for name in UNSET_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(env)

    def restore_env(self) -> None:
        """Undo :meth:`apply_env`; does nothing if it was not called."""
        if self._saved_env is None:
            return
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = None

    def shell_lines(self) -> list[str]:
        """``unset``/``export`` lines (shell-quoted) that point a POSIX shell at the stand-in."""
        import shlex

        lines = [f"unset {' '.join(UNSET_VARIABLES)}"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.env.items()]
        return lines

    # ----------------------------------------------------------------- the pieces

    @property
    def urls(self) -> dict[str, str]:
        """``{"proxy": ..., "runtime": ..., "hub": ...}``: where the servers listen."""
        return {"proxy": self.proxy_url, "runtime": self.runtime_url,
                "hub": str(self._require(self.hub_api).url)}

    @property
    def proxy_url(self) -> str:
        """The control plane (moto proxy) URL."""
        return self._require(self.control_plane).url

    @property
    def runtime_url(self) -> str:
        """The ``sagemaker-runtime`` server's URL."""
        return str(self._require(self.runtime).url)

    @property
    def role_arn(self) -> str:
        """The execution role's ARN (also ``SAGEMAKER_EXECUTION_ROLE_ARN``)."""
        return str(self._require(self.control_plane).role_arn)

    @property
    def backend_label(self) -> str:
        """One line saying which backend answers, e.g. ``replay backend: canned answer...``."""
        backend = self._require(self.backend)
        prefix = f"{backend.name} backend: "
        return backend.label if backend.label.startswith(prefix) else prefix + backend.label

    def add_hub_cache(self, cache_dir: str | os.PathLike[str]) -> Path:
        """Serve the models of another Hugging Face cache folder of the user's too (before
        those served so far); returns the hub folder used.

        Raises:
            LocalStackError: not running, or the folder is not a Hugging Face hub cache.
        """
        folder = hub_cache_folder(cache_dir)
        self._require(self.hub_api).add_cache(folder)
        self.hub_caches.insert(0, folder)
        served_model.use_hub(self.hub_api.snapshot)  # forget what was read before
        return folder

    def served_repositories(self) -> list[str]:
        """The model repositories the hub serves (the user's caches first)."""
        return self._require(self.hub_api).repositories()

    @property
    def hf_cache(self) -> Path:
        """The offline Hugging Face hub cache (``HF_HUB_CACHE``)."""
        return Path(self.env["HF_HUB_CACHE"])

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` that reaches the stand-in without :meth:`apply_env`."""
        if service == "sagemaker-runtime":
            import boto3

            return boto3.client(service, region_name=self.region,
                                endpoint_url=self.runtime_url,
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        return self._require(self.control_plane).client(service)

    def lookup(self, endpoint_name: str) -> Any:
        """What the runtime server sees of an endpoint (``EndpointInfo``), or ``None``."""
        return self._require(self.control_plane).lookup(endpoint_name)

    # ----------------------------------------------------------------- requests and faults

    def requests(self) -> list[dict[str, Any]]:
        """Every request the runtime server has received, oldest first (its records)."""
        return list(self._require(self.runtime).requests())

    def clear_requests(self) -> None:
        """Forget the runtime server's request log."""
        self._require(self.runtime).clear_requests()

    def set_fault(self, spec: str | None) -> None:
        """Set (or with None clear) the runtime server's fault for every later request.

        ``spec`` follows ``common.local.runtime.FAULT_GRAMMAR``.

        Raises:
            common.errors.PayloadError: ``spec`` does not follow the grammar.
        """
        self._require(self.runtime).set_fault(spec)

    def fail_endpoint(self, name: str, reason: str | None = None) -> None:
        """Make endpoints called ``name`` (or matching it) go ``Failed`` with ``reason``."""
        self._require(self.control_plane).fail_endpoint(name, reason)

    def fail_component(self, name: str) -> None:
        """Make inference components called ``name`` (or matching it, ``fnmatch``) go
        ``Failed`` (a failed ping health check) instead of ``InService``."""
        manager = self._require(self.scaling).manager
        with self._require(self.control_plane)._lock:
            manager.fail_patterns.append(name)

    def clear_faults(self) -> None:
        """Clear the runtime server's fault, the control plane's failing endpoints and the
        failing inference components."""
        self._require(self.runtime).set_fault(None)
        self._require(self.control_plane).clear_faults()
        with self._require(self.control_plane)._lock:
            self._require(self.scaling).manager.fail_patterns.clear()

    # ----------------------------------------------------------------- scaling

    def scaling_events(self) -> list[dict[str, Any]]:
        """Every scaling event so far, oldest first: ``{"time_s" (simulated seconds),
        "kind" (component, copies, instances, alarm, scaling), "resource", "message",
        ...}``. They are logged on the ``common.local.scaling`` logger too."""
        return list(self._require(self.scaling).events())

    def advance(self, seconds: float) -> None:
        """Move a ``ManualClock`` forward ``seconds`` in 10 s steps, evaluating the scaling
        model at each step.

        Raises:
            LocalStackError: the stand-in runs on a clock that moves by itself.
        """
        from common.local.clock import ManualClock

        if not isinstance(self.clock, ManualClock):
            raise LocalStackError("advance() needs LocalStack(clock=ManualClock()); this "
                                  "stand-in's clock moves by itself")
        scaling = self._require(self.scaling)
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self.clock.advance(min(10.0, end - self.clock.now()))
            scaling.tick()

    def _require(self, value: Any) -> Any:
        if value is None:
            raise LocalStackError("the local stand-in is not running: call start() first")
        return value
