"""Copy a model's weights from the Hugging Face Hub to S3 without filling the notebook's disk.

:func:`copy_weights_to_s3` lists the repository's files (``HfApi.list_repo_tree``), keeps
what the LMI container needs (:data:`WEIGHT_PATTERNS`), and then copies **one file at a
time**: download it into a staging folder (``hf_hub_download(local_dir=...)``), upload it
(boto3's managed transfer, multipart for large files), delete it. The disk never holds more
than the largest file (one shard: about 10 GB for Llama 2), where downloading the whole
snapshot first needs the whole model (13 GB for 7B, 26 GB for 13B, 138 GB for 70B) -- more
than a SageMaker Studio space's default 5 GB. One progress bar counts the bytes of the whole
copy. Objects already in S3 with the right size are skipped, so running it again after a
failure continues where it stopped.

The other way needs no copy at all: the LMI container can load the weights from the Hub
itself, as TGI does -- ``option.model_id`` (environment ``HF_MODEL_ID``) set to the hub id,
with ``HF_TOKEN`` for the gated Llama 2 repositories (djl-serving
``serving/docs/lmi/lmi_environment_variable_instruction.md`` and the LMI starting guide).
That needs an endpoint that may reach the internet (no ``VpcConfig`` without a NAT
gateway, no network isolation), and every instance that starts downloads from the Hub again;
the S3 copy loads faster and keeps the token off the endpoint.

**Where the copy goes.** One copy per model and revision, shared by every run:
:func:`weights_prefix` gives ``llama-2-recipes/weights/<model id>/<revision>/``, so the next
deploy of the same model reuses it and a kernel restart mid-copy resumes into the same prefix
(nothing is orphaned under a run's name). When every file is there, a manifest is written
beside the folder (``<revision>.manifest.json``: the files, their sizes and the Hub's content
ids); a later copy that finds it complete downloads nothing. Each object carries S3 user
metadata with the model, the revision and the file's content id (the Hub's LFS sha256 or git
blob id), so a branch that moved on is noticed even where a file kept its size. A run's own
small files (``model.tar.gz``) go under :func:`run_prefix` instead, and are deleted with the
run; the shared weights are deleted only on purpose (``python -m common.cleanup --weights``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.model_facts import MODEL_ID_PATTERN
from common.tags import MODEL_TAG

__all__ = [
    "MANIFEST_SUFFIX",
    "RUNS_ROOT",
    "S3_ROOT",
    "WEIGHTS_ROOT",
    "WEIGHT_PATTERNS",
    "CopyResult",
    "WeightFile",
    "copy_weights_to_s3",
    "format_bytes",
    "list_weight_files",
    "run_prefix",
    "weights_prefix",
]

S3_ROOT = "llama-2-recipes"
"""The key prefix under which the recipes put everything in the bucket."""
WEIGHTS_ROOT = f"{S3_ROOT}/weights"
"""Shared weight copies: ``<WEIGHTS_ROOT>/<model id>/<revision>/`` (see :func:`weights_prefix`)."""
RUNS_ROOT = f"{S3_ROOT}/runs"
"""Each run's own uploads: ``<RUNS_ROOT>/<endpoint name>/`` (see :func:`run_prefix`)."""
MANIFEST_SUFFIX = ".manifest.json"
"""A complete copy's manifest sits beside its folder: ``<prefix>.manifest.json``."""
OID_METADATA = "llama-recipes-oid"
MODEL_METADATA = MODEL_TAG  # the same key as the resources' model tag
REVISION_METADATA = "llama-recipes-revision"

WEIGHT_PATTERNS: tuple[str, ...] = ("*.json", "*.txt", "*.model", "*.safetensors", "*.bin",
                                    "*.chk", "*.pth", "*.jinja")
"""What the LMI container needs: configuration, tokenizer (with a chat template saved as
``chat_template.jinja``, as transformers >= 4.47 does) and weights (the original recipe's
allow-patterns, plus ``*.jinja``). Where a repository has ``*.safetensors`` weights, the
PyTorch ``*.bin`` / ``*.pth`` / ``*.chk`` copies of the same weights are left out (vLLM
loads safetensors)."""

_PICKLE_WEIGHTS = ("*.bin", "*.pth", "*.chk")
_MULTIPART_THRESHOLD = 64 * 1024 * 1024


@dataclass(frozen=True)
class WeightFile:
    """One file of a repository: its path, its size in bytes and the Hub's content id (the
    LFS sha256, else the git blob id; "" when the Hub gave none)."""

    path: str
    size: int
    oid: str = ""


def weights_prefix(model_id: str, revision: str | None = None) -> str:
    """Return the S3 key prefix of the shared copy of ``model_id`` at ``revision``.

    ``llama-2-recipes/weights/<owner>/<name>/<revision>`` (``main`` when ``revision`` is
    None; a ``/`` inside a revision such as ``refs/pr/1`` becomes ``--``). Every run of every
    recipe that deploys this model and revision uses the same prefix.

    Raises:
        ValueError: ``model_id`` is not ``owner/name``, or the revision is empty.
    """
    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id):
        raise ValueError(f"model_id must look like 'owner/name'; got {model_id!r}")
    revision = "main" if revision is None else revision
    if not isinstance(revision, str) or not revision.strip("/"):
        raise ValueError(f"revision must be a branch, tag or commit; got {revision!r}")
    return f"{WEIGHTS_ROOT}/{model_id}/{revision.strip('/').replace('/', '--')}"


def run_prefix(endpoint_name: str) -> str:
    """Return the S3 key prefix of one run's own uploads: ``llama-2-recipes/runs/<name>``.

    Raises:
        ValueError: an empty name or one with ``/``.
    """
    if not isinstance(endpoint_name, str) or not endpoint_name or "/" in endpoint_name:
        raise ValueError(f"endpoint_name must be a resource name; got {endpoint_name!r}")
    return f"{RUNS_ROOT}/{endpoint_name}"


@dataclass
class CopyResult:
    """What :func:`copy_weights_to_s3` did.

    Attributes:
        uri: the S3 prefix of the weights (``s3://bucket/prefix/``), for ``option.model_id``.
        files: every file of the copy.
        uploaded: the paths uploaded by this run.
        skipped: the paths already in S3 with the right size and content.
        total_bytes: the size of all files.
        largest_file_bytes: the size of the largest file (what the disk must hold).
        peak_disk_bytes: the most bytes the staging folder held at once during this run.
        manifest_uri: where the manifest of the complete copy is.
    """

    uri: str
    files: list[WeightFile] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    total_bytes: int = 0
    largest_file_bytes: int = 0
    peak_disk_bytes: int = 0
    manifest_uri: str = ""

    @property
    def reused(self) -> bool:
        """True when every file was already in S3 (an earlier copy of this model and
        revision): nothing was downloaded or uploaded."""
        return bool(self.files) and not self.uploaded

    def summary(self) -> str:
        """Two lines: files and bytes copied, skipped, and the peak disk use (or that an
        earlier copy of this model and revision is reused); then ``-> s3://...`` (on a line of
        its own, so that neither runs on)."""
        if self.reused:
            return (f"All {len(self.files)} files ({format_bytes(self.total_bytes)}) are already "
                    f"in S3 from an earlier copy of this model and revision: nothing copied\n"
                    f"-> {self.uri}")
        return (f"{len(self.uploaded)} files uploaded, {len(self.skipped)} already in S3; "
                f"{format_bytes(self.total_bytes)} in all; the disk held at most "
                f"{format_bytes(self.peak_disk_bytes)} at once (largest file "
                f"{format_bytes(self.largest_file_bytes)})\n-> {self.uri}")


def format_bytes(size: float) -> str:
    """Return a size in decimal units, e.g. ``13.5 GB``, ``2.9 kB``, ``512 B``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def list_weight_files(
    repo_id: str,
    *,
    token: str | bool | None = None,
    revision: str | None = None,
    allow_patterns: Sequence[str] = WEIGHT_PATTERNS,
    endpoint: str | None = None,
) -> list[WeightFile]:
    """Return the repository's files that the container needs, with their sizes.

    Args:
        repo_id: the Hugging Face model id.
        token: a Hugging Face read token (None: ``huggingface_hub``'s own: ``HF_TOKEN`` or
            the saved login).
        revision: a branch, tag or commit (None: ``main``).
        allow_patterns: ``fnmatch`` patterns of the files to keep.
        endpoint: the Hub's URL (None: ``huggingface_hub``'s, i.e. ``HF_ENDPOINT``).

    Raises:
        huggingface_hub.errors.GatedRepoError / RepositoryNotFoundError / HfHubHTTPError:
            as ``HfApi.list_repo_tree`` raises them (no access to the gated model, a wrong
            id, no connection).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    entries = HfApi(endpoint=endpoint).list_repo_tree(
        repo_id, revision=revision, recursive=True, token=token)
    files = [WeightFile(entry.path, int(entry.size), _oid(entry)) for entry in entries
             if isinstance(entry, RepoFile) and _matches(entry.path, allow_patterns)]
    if any(f.path.endswith(".safetensors") for f in files):
        files = [f for f in files if not _matches(f.path, _PICKLE_WEIGHTS)]
    return sorted(files, key=lambda f: f.path)


def _oid(entry: Any) -> str:
    lfs = getattr(entry, "lfs", None)
    sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
    if sha256 is None and isinstance(lfs, dict):
        sha256 = lfs.get("sha256")
    return str(sha256 or getattr(entry, "blob_id", "") or "")


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _read_manifest(s3_client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in {"NoSuchKey", "404"}:
            return None
        raise
    try:
        manifest = json.loads(body)
    except ValueError:
        return None  # not ours, or cut short: the objects are checked one by one instead
    return manifest if isinstance(manifest, dict) else None


def _stored_oid(s3_client: Any, bucket: str, key: str) -> str:
    metadata = s3_client.head_object(Bucket=bucket, Key=key).get("Metadata", {})
    return str(metadata.get(OID_METADATA, ""))


def _existing_sizes(s3_client: Any, bucket: str, prefix: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = int(item["Size"])
    return sizes


def copy_weights_to_s3(
    repo_id: str,
    bucket: str,
    prefix: str,
    *,
    s3_client: Any = None,
    token: str | bool | None = None,
    revision: str | None = None,
    allow_patterns: Sequence[str] = WEIGHT_PATTERNS,
    staging_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    progress: bool = True,
    on_file_done: Callable[[WeightFile, Path], None] | None = None,
) -> CopyResult:
    """Copy a repository's weights to ``s3://bucket/prefix/``, one file at a time.

    Each missing file is downloaded into ``staging_dir``, uploaded with boto3's managed
    transfer (multipart above 64 MiB) and deleted before the next one starts, so the disk
    never holds more than the largest file. Files already in S3 with the same size and the
    same content id are skipped (a re-run resumes; a complete copy is reused). One ``tqdm``
    bar counts the bytes of the whole copy. When every file is in S3, a manifest is written
    beside the prefix (``<prefix>.manifest.json``). Use :func:`weights_prefix` for
    ``prefix``, so that every run of the same model and revision shares one copy.

    Args:
        repo_id: the Hugging Face model id.
        bucket: the S3 bucket.
        prefix: the key prefix (no leading or trailing ``/`` needed).
        s3_client: a boto3 S3 client (default: a new one).
        token: a Hugging Face read token (None: ``huggingface_hub``'s own).
        revision: a branch, tag or commit (None: ``main``).
        allow_patterns: the files to copy (see :data:`WEIGHT_PATTERNS`).
        staging_dir: the folder in which each file waits between download and upload
            (default: the system's temporary folder). The copy stages in a new subfolder of
            its own there, removed at the end, so copies running at once never touch each
            other's files.
        endpoint: the Hub's URL (None: ``HF_ENDPOINT`` / huggingface.co).
        progress: show the progress bar.
        on_file_done: called with (file, staged path) after each upload, before the delete
            (tests measure the disk with it).

    Returns:
        A :class:`CopyResult`; its ``uri`` goes into ``option.model_id``.

    Raises:
        huggingface_hub.errors.GatedRepoError: the token has no access to the gated model.
        botocore.exceptions.ClientError / boto3.exceptions.S3UploadFailedError: S3 refused.
        OSError: the disk is full even for one file (the message of
            ``common.preflight`` says how much the largest file needs).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3")
    from boto3.s3.transfer import TransferConfig

    prefix = prefix.strip("/")
    files = list_weight_files(repo_id, token=token, revision=revision,
                              allow_patterns=allow_patterns, endpoint=endpoint)
    manifest_key = prefix + MANIFEST_SUFFIX
    result = CopyResult(uri=f"s3://{bucket}/{prefix}/", files=files,
                        total_bytes=sum(f.size for f in files),
                        largest_file_bytes=max((f.size for f in files), default=0),
                        manifest_uri=f"s3://{bucket}/{manifest_key}")
    existing = _existing_sizes(s3_client, bucket, prefix + "/")
    manifest = _read_manifest(s3_client, bucket, manifest_key) or {}
    recorded = {str(f.get("path")): str(f.get("oid", "")) for f in manifest.get("files", [])
                if isinstance(f, dict)}
    labels = {MODEL_METADATA: repo_id, REVISION_METADATA: revision or "main"}

    def already_there(file: WeightFile, key: str) -> bool:
        if existing.get(key) != file.size:
            return False
        if not file.oid or recorded.get(file.path) == file.oid:
            return True
        stored = _stored_oid(s3_client, bucket, key)
        return not stored or stored == file.oid  # no id stored: a copy made before ids
    # A folder of this copy's own, inside staging_dir: two copies at once (two notebooks,
    # two kernels) that share a staging_dir never download into, or delete from, each
    # other's files.
    if staging_dir is not None:
        Path(staging_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="weights-", dir=staging_dir))
    transfer = TransferConfig(multipart_threshold=_MULTIPART_THRESHOLD,
                              multipart_chunksize=_MULTIPART_THRESHOLD)
    bars_were_disabled = are_progress_bars_disabled()
    disable_progress_bars()  # one bar for the whole copy, not one per download
    bar = _progress_bar(result.total_bytes, enabled=progress)
    try:
        for file in files:
            key = f"{prefix}/{file.path}"
            if already_there(file, key):
                result.skipped.append(file.path)
                bar.update(file.size)
                continue
            bar.set_postfix_str(f"downloading {file.path}", refresh=True)
            local = Path(hf_hub_download(repo_id, file.path, revision=revision, token=token,
                                         local_dir=staging, endpoint=endpoint))
            result.peak_disk_bytes = max(result.peak_disk_bytes, _folder_bytes(staging))
            bar.set_postfix_str(f"uploading {file.path}", refresh=True)
            s3_client.upload_file(str(local), bucket, key, Callback=bar.update, Config=transfer,
                                  ExtraArgs={"Metadata": {**labels, OID_METADATA: file.oid}})
            if on_file_done is not None:
                on_file_done(file, local)
            local.unlink()
            # hf_hub_download's per-file metadata: gone too, so nothing accumulates.
            shutil.rmtree(staging / ".cache", ignore_errors=True)
            result.uploaded.append(file.path)
        if result.uploaded or recorded != {f.path: f.oid for f in files}:
            _write_manifest(s3_client, bucket, manifest_key, repo_id, revision, files, labels)
        bar.set_postfix_str("done", refresh=True)
    finally:
        bar.close()
        if not bars_were_disabled:
            enable_progress_bars()
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _write_manifest(s3_client: Any, bucket: str, key: str, repo_id: str,
                    revision: str | None, files: Sequence[WeightFile],
                    labels: Mapping[str, str]) -> None:
    import datetime

    body = json.dumps({
        "model_id": repo_id,
        "revision": revision or "main",
        "completed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": [{"path": f.path, "size": f.size, "oid": f.oid} for f in files],
    }, indent=1).encode()
    s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                         Metadata=dict(labels))


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, *, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc="Weights to S3")
