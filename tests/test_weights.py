"""common.copy_weights_to_s3 against the stand-in: disk use, resuming, what is copied.

The test writes a model in many shards into the stand-in's hub cache (served by its local
Hub API), copies it, and measures the bytes on the staging disk while the copy runs: a
thread samples the folder continuously, and the copy's own hook measures it at the moment
each file is fullest (downloaded, uploaded, not yet deleted).
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from pathlib import Path

import pytest

import common
from common.local.hub import write_snapshot
from common.weights import _folder_bytes

SHARDS = 12
METADATA_ALLOWANCE = 4096  # hf_hub_download's metadata file for the one file being copied


class _DiskSampler:
    """Samples a folder's size in a thread until stopped; keeps the maximum."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _folder_bytes(self.folder))
            self.samples += 1

    def __enter__(self) -> _DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def sharded_model(local_stack) -> tuple[str, dict[str, bytes]]:
    """A model repository in 12 shards of 150-400 kB (and the PyTorch duplicates)."""
    repo_id = f"local-test/sharded-{uuid.uuid4().hex[:6]}"
    rng = random.Random(11)
    files = {
        "config.json": b'{"model_type": "llama"}\n',
        "tokenizer.json": b'{"version": "1.0"}\n',
        "README.md": b"# not copied\n",
        "model.safetensors.index.json": b'{"weight_map": {}}\n',
    }
    for number in range(1, SHARDS + 1):
        size = rng.randrange(150_000, 400_000)
        name = f"model-{number:05d}-of-{SHARDS:05d}"
        files[f"{name}.safetensors"] = rng.randbytes(size)
        files[f"pytorch_{name}.bin"] = rng.randbytes(size // 2)
    write_snapshot(local_stack.hf_cache, repo_id, files)
    return repo_id, files


def _bucket(stack) -> str:
    name = f"sagemaker-weights-{uuid.uuid4().hex[:8]}"
    stack.client("s3").create_bucket(Bucket=name)
    return name


def _copied(files: dict[str, bytes]) -> dict[str, int]:
    return {path: len(data) for path, data in files.items()
            if path.endswith((".json", ".safetensors"))}


def test_the_copy_never_holds_more_than_the_largest_file(local_stack, sharded_model, tmp_path):
    repo_id, files = sharded_model
    wanted = _copied(files)
    largest, total = max(wanted.values()), sum(wanted.values())
    staging = tmp_path / "staging"
    at_fullest: list[int] = []
    s3 = local_stack.client("s3")
    bucket = _bucket(local_stack)
    with _DiskSampler(staging) as sampler:
        result = common.copy_weights_to_s3(
            repo_id, bucket, "run/model", s3_client=s3, staging_dir=staging,
            endpoint=local_stack.env["HF_ENDPOINT"], progress=False,
            on_file_done=lambda file, path: at_fullest.append(_folder_bytes(staging)))
    print(f"\nsnapshot {total} bytes in {len(wanted)} files (largest {largest}); peak on disk: "
          f"{max(at_fullest)} at the fullest moments, {sampler.peak} sampled "
          f"({sampler.samples} samples), {result.peak_disk_bytes} reported")
    assert sorted(result.uploaded) == sorted(wanted) and not result.skipped
    assert result.total_bytes == total and result.largest_file_bytes == largest
    assert max(at_fullest) <= largest + METADATA_ALLOWANCE
    assert sampler.peak <= largest + METADATA_ALLOWANCE
    assert result.peak_disk_bytes <= largest + METADATA_ALLOWANCE
    assert max(at_fullest) >= largest, "the largest file was never on the disk"
    assert total > 5 * largest
    assert _folder_bytes(staging) == 0
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="run/model/")
    assert {item["Key"].removeprefix("run/model/"): item["Size"]
            for item in listing["Contents"]} == wanted
    shard = "model-00003-of-00012.safetensors"
    assert s3.get_object(Bucket=bucket, Key=f"run/model/{shard}")["Body"].read() == files[shard]
    assert result.uri == f"s3://{bucket}/run/model/"


def test_two_copies_at_once_share_a_staging_folder_safely(local_stack, sharded_model,
                                                          tmp_path):
    """Two notebooks copying the same model at once with the recipes' one STAGING_DIR: each
    copy stages in a folder of its own, so neither deletes the file the other is uploading.
    A barrier after every upload holds both copies at the moment their files are on disk."""
    repo_id, files = sharded_model
    wanted = _copied(files)
    staging = tmp_path / "shared-staging"
    s3 = local_stack.client("s3")
    buckets = [_bucket(local_stack), _bucket(local_stack)]
    both_uploaded = threading.Barrier(2, timeout=60)
    results: dict[str, common.CopyResult] = {}
    errors: list[BaseException] = []

    def copy(bucket: str) -> None:
        try:
            results[bucket] = common.copy_weights_to_s3(
                repo_id, bucket, "shared/model", s3_client=s3, staging_dir=staging,
                endpoint=local_stack.env["HF_ENDPOINT"], progress=False,
                on_file_done=lambda file, path: both_uploaded.wait())
        except BaseException as exc:  # reported below, with the other copy's outcome
            both_uploaded.abort()
            errors.append(exc)

    threads = [threading.Thread(target=copy, args=(bucket,)) for bucket in buckets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, f"a copy failed: {errors!r}"
    for bucket in buckets:
        assert sorted(results[bucket].uploaded) == sorted(wanted)
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="shared/model/")
        assert {item["Key"].removeprefix("shared/model/"): item["Size"]
                for item in listing["Contents"]} == wanted
    assert staging.is_dir() and not any(staging.iterdir()), "a copy left files behind"


def test_a_resumed_copy_uploads_only_what_is_missing(local_stack, sharded_model):
    repo_id, files = sharded_model
    wanted = _copied(files)
    s3 = local_stack.client("s3")
    bucket = _bucket(local_stack)
    options = {"s3_client": s3, "endpoint": local_stack.env["HF_ENDPOINT"], "progress": False}
    common.copy_weights_to_s3(repo_id, bucket, "resume/model", **options)
    # A copy that stopped part-way: two shards never arrived, one arrived truncated.
    missing = ["model-00002-of-00012.safetensors", "model-00009-of-00012.safetensors"]
    for path in missing:
        s3.delete_object(Bucket=bucket, Key=f"resume/model/{path}")
    truncated = "model-00005-of-00012.safetensors"
    s3.put_object(Bucket=bucket, Key=f"resume/model/{truncated}", Body=files[truncated][:100])
    downloads_before = _downloads(local_stack, repo_id)

    result = common.copy_weights_to_s3(repo_id, bucket, "resume/model", **options)

    assert sorted(result.uploaded) == sorted([*missing, truncated])
    assert sorted(result.skipped) == sorted(set(wanted) - {*missing, truncated})
    downloaded = _downloads(local_stack, repo_id)[len(downloads_before):]
    assert sorted(path.rsplit("/", 1)[-1] for path in downloaded) == sorted(
        [*missing, truncated])
    head = s3.head_object(Bucket=bucket, Key=f"resume/model/{truncated}")
    assert head["ContentLength"] == len(files[truncated])


def _downloads(stack, repo_id: str) -> list[str]:
    return [r["path"] for r in stack.hub_api.requests()
            if r["method"] == "GET" and f"/{repo_id}/resolve/" in r["path"]]


def test_the_llama_copy_leaves_out_the_pytorch_duplicates(local_stack):
    files = common.list_weight_files("meta-llama/Llama-2-7b-chat-hf",
                                     endpoint=local_stack.env["HF_ENDPOINT"])
    paths = {f.path for f in files}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer.model"} <= paths
    assert "pytorch_model.bin" not in paths and "README.md" not in paths


def test_a_gated_model_without_access_is_refused_before_any_upload(local_stack):
    from huggingface_hub.errors import GatedRepoError

    repo = "meta-llama/Llama-2-13b-chat-hf"
    s3 = local_stack.client("s3")
    bucket = _bucket(local_stack)
    local_stack.hub_api.deny(repo)
    try:
        with pytest.raises(GatedRepoError):
            common.copy_weights_to_s3(repo, bucket, "denied", s3_client=s3, progress=False,
                                      endpoint=local_stack.env["HF_ENDPOINT"])
    finally:
        local_stack.hub_api.allow(repo)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_complete_copy_is_reused_and_says_so(local_stack, sharded_model):
    repo_id, files = sharded_model
    wanted = _copied(files)
    s3 = local_stack.client("s3")
    bucket = _bucket(local_stack)
    prefix = common.weights_prefix(repo_id)
    options = {"s3_client": s3, "endpoint": local_stack.env["HF_ENDPOINT"], "progress": False}
    first = common.copy_weights_to_s3(repo_id, bucket, prefix, **options)
    assert sorted(first.uploaded) == sorted(wanted) and not first.reused
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}.manifest.json")
                          ["Body"].read())
    assert manifest["model_id"] == repo_id and manifest["revision"] == "main"
    assert {f["path"] for f in manifest["files"]} == set(wanted)
    assert all(f["oid"] for f in manifest["files"]), "the Hub's content ids are recorded"
    head = s3.head_object(Bucket=bucket, Key=f"{prefix}/config.json")
    assert head["Metadata"]["llama-recipes-model"] == repo_id
    downloads_before = _downloads(local_stack, repo_id)

    again = common.copy_weights_to_s3(repo_id, bucket, prefix, **options)

    assert again.reused and again.uploaded == [] and sorted(again.skipped) == sorted(wanted)
    assert _downloads(local_stack, repo_id) == downloads_before, "a complete copy downloads"
    assert again.summary().startswith(f"All {len(wanted)} files (")
    assert "already in S3 from an earlier copy of this model and revision" in again.summary()
    assert again.uri == f"s3://{bucket}/{prefix}/"


def test_an_object_of_the_right_size_but_other_content_is_copied_again(local_stack,
                                                                        sharded_model):
    repo_id, files = sharded_model
    s3 = local_stack.client("s3")
    bucket = _bucket(local_stack)
    options = {"s3_client": s3, "endpoint": local_stack.env["HF_ENDPOINT"], "progress": False}
    common.copy_weights_to_s3(repo_id, bucket, "moved/model", **options)
    # The branch moved on: same size, other bytes (another content id); no manifest entry.
    shard = "model-00004-of-00012.safetensors"
    s3.put_object(Bucket=bucket, Key=f"moved/model/{shard}", Body=bytes(len(files[shard])),
                  Metadata={"llama-recipes-oid": "an-older-commit's-blob"})
    s3.delete_object(Bucket=bucket, Key="moved/model.manifest.json")

    result = common.copy_weights_to_s3(repo_id, bucket, "moved/model", **options)

    assert result.uploaded == [shard]
    body = s3.get_object(Bucket=bucket, Key=f"moved/model/{shard}")["Body"].read()
    assert body == files[shard]


def test_weight_and_run_prefixes():
    assert common.weights_prefix("meta-llama/Llama-2-7b-chat-hf") == (
        "llama-2-recipes/weights/meta-llama/Llama-2-7b-chat-hf/main")
    assert common.weights_prefix("meta-llama/Llama-2-7b-chat-hf", "refs/pr/3").endswith(
        "/Llama-2-7b-chat-hf/refs--pr--3")
    assert common.run_prefix("llama-2-7b-chat-tgi-20261205-101500") == (
        "llama-2-recipes/runs/llama-2-7b-chat-tgi-20261205-101500")
    with pytest.raises(ValueError, match="owner/name"):
        common.weights_prefix("not an id")
    with pytest.raises(ValueError, match="resource name"):
        common.run_prefix("a/b")
