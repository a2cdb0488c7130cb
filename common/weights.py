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
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "WEIGHT_PATTERNS",
    "CopyResult",
    "WeightFile",
    "copy_weights_to_s3",
    "format_bytes",
    "list_weight_files",
]

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
    """One file of a repository: its path in the repository and its size in bytes."""

    path: str
    size: int


@dataclass
class CopyResult:
    """What :func:`copy_weights_to_s3` did.

    Attributes:
        uri: the S3 prefix of the weights (``s3://bucket/prefix/``), for ``option.model_id``.
        files: every file of the copy.
        uploaded: the paths uploaded by this run.
        skipped: the paths already in S3 with the right size.
        total_bytes: the size of all files.
        largest_file_bytes: the size of the largest file (what the disk must hold).
        peak_disk_bytes: the most bytes the staging folder held at once during this run.
    """

    uri: str
    files: list[WeightFile] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    total_bytes: int = 0
    largest_file_bytes: int = 0
    peak_disk_bytes: int = 0

    def summary(self) -> str:
        """Two lines: files and bytes copied, skipped, and the peak disk use; then
        ``-> s3://...`` (on a line of its own, so that neither runs on)."""
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
    files = [WeightFile(entry.path, int(entry.size)) for entry in entries
             if isinstance(entry, RepoFile) and _matches(entry.path, allow_patterns)]
    if any(f.path.endswith(".safetensors") for f in files):
        files = [f for f in files if not _matches(f.path, _PICKLE_WEIGHTS)]
    return sorted(files, key=lambda f: f.path)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total


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
    never holds more than the largest file. Files already in S3 with the same size are
    skipped (a re-run resumes). One ``tqdm`` bar counts the bytes of the whole copy.

    Args:
        repo_id: the Hugging Face model id.
        bucket: the S3 bucket.
        prefix: the key prefix (no leading or trailing ``/`` needed).
        s3_client: a boto3 S3 client (default: a new one).
        token: a Hugging Face read token (None: ``huggingface_hub``'s own).
        revision: a branch, tag or commit (None: ``main``).
        allow_patterns: the files to copy (see :data:`WEIGHT_PATTERNS`).
        staging_dir: where each file waits between download and upload (default: a new
            temporary folder, removed at the end).
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
    result = CopyResult(uri=f"s3://{bucket}/{prefix}/", files=files,
                        total_bytes=sum(f.size for f in files),
                        largest_file_bytes=max((f.size for f in files), default=0))
    existing = _existing_sizes(s3_client, bucket, prefix + "/")
    owns_staging = staging_dir is None
    staging = Path(tempfile.mkdtemp(prefix="weights-") if owns_staging else staging_dir)
    staging.mkdir(parents=True, exist_ok=True)
    transfer = TransferConfig(multipart_threshold=_MULTIPART_THRESHOLD,
                              multipart_chunksize=_MULTIPART_THRESHOLD)
    bars_were_disabled = are_progress_bars_disabled()
    disable_progress_bars()  # one bar for the whole copy, not one per download
    bar = _progress_bar(result.total_bytes, enabled=progress)
    try:
        for file in files:
            key = f"{prefix}/{file.path}"
            if existing.get(key) == file.size:
                result.skipped.append(file.path)
                bar.update(file.size)
                continue
            bar.set_postfix_str(f"downloading {file.path}", refresh=True)
            local = Path(hf_hub_download(repo_id, file.path, revision=revision, token=token,
                                         local_dir=staging, endpoint=endpoint))
            result.peak_disk_bytes = max(result.peak_disk_bytes, _folder_bytes(staging))
            bar.set_postfix_str(f"uploading {file.path}", refresh=True)
            s3_client.upload_file(str(local), bucket, key, Callback=bar.update, Config=transfer)
            if on_file_done is not None:
                on_file_done(file, local)
            local.unlink()
            # hf_hub_download's per-file metadata: gone too, so nothing accumulates.
            shutil.rmtree(staging / ".cache", ignore_errors=True)
            result.uploaded.append(file.path)
        bar.set_postfix_str("done", refresh=True)
    finally:
        bar.close()
        if not bars_were_disabled:
            enable_progress_bars()
        if owns_staging:
            shutil.rmtree(staging, ignore_errors=True)
    return result


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
