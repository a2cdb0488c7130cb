"""Render the recipe notebooks from jinja2 templates and the deployment presets.

Each container has one deploy and one inference template under ``templates/``; the cells
that both containers share live in ``_deploy.ipynb.j2`` / ``_inference.ipynb.j2`` (which the
container templates extend) and ``_macros.j2``. A template renders to plain text in which a
line ``%%% markdown`` or ``%%% code`` starts a new cell; :func:`render_notebook` turns that
text into an nbformat 4 notebook with stable cell ids (derived from each cell's position and
content), no outputs and no execution counts, so that rendering twice gives the same bytes
and a committed notebook can be compared with a fresh render exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import nbformat
from nbformat import NotebookNode

__all__ = [
    "CONTAINERS",
    "PROMPT_FORMATS",
    "RECIPES",
    "REPO_ROOT",
    "SIZES",
    "Recipe",
    "check_notebooks",
    "new_pair",
    "new_recipe",
    "new_recipes",
    "notebook_text",
    "recipe_for",
    "recipe_from_facts",
    "recipe_paths",
    "recipe_summary",
    "render_all",
    "render_notebook",
    "render_recipe",
    "render_scale",
    "scale_path",
    "write_notebooks",
    "write_recipe",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = Path(__file__).with_name("templates")
SIZES = ("7b", "13b", "70b")
CONTAINERS = ("tgi", "lmi")
PROMPT_FORMATS = ("llama2", "llama3")
"""The built-in prompt builders ``--prompt-format`` can pick; by default a new pair renders the
model's own chat template (``"template"``)."""

_CELL_MARKER = re.compile(r"^%%% (markdown|code)[ \t]*$")
_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
_LANGUAGE_INFO = {"name": "python", "file_extension": ".py", "mimetype": "text/x-python"}
_CONTAINER_LABELS = {
    "tgi": "Hugging Face TGI",
    "lmi": "AWS LMI",
}
# Per container: the image_uris framework name, how the prose names the pinned version, and
# the number of the deploy notebook's "create the resources" section (LMI has one more).
_CONTAINER_FACTS: dict[str, dict[str, Any]] = {
    "tgi": {"image_framework": "huggingface-llm", "version_label": "TGI {}",
            "deploy_section": 3},
    "lmi": {"image_framework": "djl-lmi", "version_label": "DJL Serving {}",
            "deploy_section": 4},
}


@dataclass(frozen=True)
class Recipe:
    """One deploy + inference notebook pair: what the templates need to render it.

    Attributes:
        container: ``"tgi"`` or ``"lmi"``.
        model_id: the Hugging Face model id, e.g. ``meta-llama/Llama-2-7b-chat-hf``.
        model_title: how the prose names the model, e.g. ``Llama 2 7B Chat``.
        instance_type: the SageMaker instance type, e.g. ``ml.g5.2xlarge``.
        directory: the folder of the pair, relative to the output root.
        deploy_name / inference_name: the two notebook file names.
        preset_args: the arguments of ``common.get_preset(...)`` in the notebook, as Python
            source (e.g. ``"7b", "tgi"``).
        preset_edits: ``dataclasses.replace`` keyword arguments (Python source) applied to
            that preset in the notebook, or ``""`` when the preset is used as it is.
        prompt_format: ``"llama2"`` or ``"llama3"`` -- which prompt builder the inference
            notebook calls.
        slug: the stem of the SageMaker resource names (lower case, hyphens).
        num_gpus: the GPUs of the instance.
        hardware: a few words on the instance's GPUs, e.g. ``1 x NVIDIA A10G, 24 GiB``.
        price_per_hour: approximate on-demand USD per hour, or ``None`` when unknown.
        container_version: the image version the preset pins (``3.3.6`` for TGI).
        max_instances: the scale notebook's ``ManagedInstanceScaling`` maximum
            (:func:`common.presets.scaling_settings`).
        family / licence_name / licence_url: the model family and its licence, for the prose
            (empty for the Llama 2 recipes, whose wording is fixed).
        preset_code: Python source of the deploy notebook's settings cell, replacing the
            ``get_preset`` + ``dataclasses.replace`` cell (empty: that cell).
        sizing_note: markdown that states the instance and token limits chosen and why.
        preset: the :class:`~common.presets.Preset` the notebooks will deploy, for the values
            the markdown states (token limits, batch settings) and the time and cost of the
            first cell.
        temperature / top_p: the sampling the inference notebook sends (Python literals).
        sampling_note: markdown saying where they came from (empty: the recipes' defaults,
            said nowhere, as in the Llama 2 recipes).
        multimodal_note: a sentence for a multimodal model served for text chat, or ``""``.
        messages_api_note: why the Messages API section is left out (TGI cannot read the
            model's chat template), or ``""`` when the section runs.
        revision_arg: ``", revision=preset.revision"`` where the inference notebook reads the
            model's files at the preset's revision (pairs written by ``new``), else ``""``.
        support_note: which container serves the model's architecture, for the summary.
    """

    container: str
    model_id: str
    model_title: str
    instance_type: str
    directory: PurePosixPath
    deploy_name: str
    inference_name: str
    preset_args: str
    preset_edits: str
    prompt_format: str
    slug: str
    num_gpus: int
    hardware: str
    price_per_hour: float | None
    container_version: str
    preset: Any
    max_instances: int = 2
    family: str = ""
    licence_name: str = ""
    licence_url: str = ""
    preset_code: str = ""
    sizing_note: str = ""
    temperature: str = "0.6"
    top_p: str = "0.9"
    sampling_note: str = ""
    multimodal_note: str = ""
    messages_api_note: str = ""
    revision_arg: str = ""
    support_note: str = ""

    @property
    def deploy_path(self) -> PurePosixPath:
        """The deploy notebook's path relative to the output root."""
        return self.directory / self.deploy_name

    @property
    def inference_path(self) -> PurePosixPath:
        """The inference notebook's path relative to the output root."""
        return self.directory / self.inference_name

    @property
    def scale_name(self) -> str:
        """The scale notebook's file name (``3-scale-<stem>-<container>.ipynb``)."""
        return self.deploy_name.replace("1-deploy-", "3-scale-", 1)

    @property
    def scale_path(self) -> PurePosixPath:
        """The scale notebook's path relative to the output root."""
        return self.directory / self.scale_name

    def context(self) -> dict[str, Any]:
        """Return the template variables of this recipe."""
        from common.presets import LMI_VERSION_SUMMARY
        from common.recipe_state import state_key

        facts = _CONTAINER_FACTS[self.container]
        return {
            "image_framework": facts["image_framework"],
            "deploy_section": facts["deploy_section"],
            "container_version_label": facts["version_label"].format(self.container_version),
            "lmi_version_summary": LMI_VERSION_SUMMARY,
            "recipe_preset": self.preset,
            "container": self.container,
            "container_label": _CONTAINER_LABELS[self.container],
            "model_id": self.model_id,
            "model_title": self.model_title,
            "instance_type": self.instance_type,
            "num_gpus": self.num_gpus,
            "hardware": self.hardware,
            "preset_args": self.preset_args,
            "preset_edits": self.preset_edits,
            "prompt_format": self.prompt_format,
            "slug": self.slug,
            # Each recipe's own %store key; the scale notebook is a recipe of its own.
            "state_key": state_key(self.slug),
            "scale_recipe": f"{self.slug}-scale",
            "scale_state_key": state_key(f"{self.slug}-scale"),
            "deploy_notebook": self.deploy_name,
            "inference_notebook": self.inference_name,
            "scale_notebook": self.scale_name,
            "max_instances": self.max_instances,
            "family": self.family,
            "licence_name": self.licence_name,
            "licence_url": self.licence_url,
            "preset_code": self.preset_code,
            "sizing_note": self.sizing_note,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "sampling_note": self.sampling_note,
            "multimodal_note": self.multimodal_note,
            "messages_api_note": self.messages_api_note,
            "revision_arg": self.revision_arg,
        }


# --------------------------------------------------------------------------- recipes


def _check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _recipe_names(container: str, size: str) -> tuple[PurePosixPath, str, str]:
    if container == "tgi":
        stem = f"llama-2-{size}-chat-hf"
        return (PurePosixPath("llama-2-hf-tgi", stem), f"1-deploy-{stem}-tgi.ipynb",
                f"2-inference-{stem}-tgi-streaming.ipynb")
    stem = f"llama-2-{size}-chat"
    return (PurePosixPath("llama-2-lmi", stem), f"1-deploy-{stem}-lmi.ipynb",
            f"2-inference-{stem}-lmi-streaming.ipynb")


def recipe_paths(container: str, size: str, root: Path = REPO_ROOT) -> tuple[Path, Path]:
    """Return the (deploy, inference) notebook paths of one of the six recipes.

    Args:
        container: ``"tgi"`` or ``"lmi"``.
        size: ``"7b"``, ``"13b"`` or ``"70b"``.
        root: the repository root.

    Raises:
        ValueError: for an unknown container or size.
    """
    _check_choice("container", container, CONTAINERS)
    _check_choice("size", size, SIZES)
    directory, deploy, inference = _recipe_names(container, size)
    return root / directory / deploy, root / directory / inference


def _hardware(instance_type: str) -> tuple[str, float | None]:
    """Describe an instance's GPUs and price, from the presets' instance table."""
    from common.presets import instance_info

    info = instance_info(instance_type)
    gpus = f"{info.gpus} x NVIDIA {info.gpu_name}, {info.gpu_memory_gib:g} GiB each"
    return gpus, info.price_per_hour


def recipe_for(container: str, size: str) -> Recipe:
    """Return the :class:`Recipe` of one of the six Llama 2 chat recipes, from its preset.

    Raises:
        ValueError: for an unknown container or size.
    """
    from common.presets import get_preset, scaling_settings

    _check_choice("container", container, CONTAINERS)
    _check_choice("size", size, SIZES)
    preset = get_preset(size, container)
    directory, deploy, inference = _recipe_names(container, size)
    hardware, price = _hardware(preset.instance_type)
    return Recipe(
        container=container,
        model_id=preset.model_id,
        model_title=f"Llama 2 {size.upper()} Chat",
        instance_type=preset.instance_type,
        directory=directory,
        deploy_name=deploy,
        inference_name=inference,
        preset_args=f'"{size}", "{container}"',
        preset_edits="",
        prompt_format="llama2",
        slug=f"llama-2-{size}-chat-{container}",
        num_gpus=preset.num_gpus,
        hardware=hardware,
        price_per_hour=price,
        container_version=preset.container_version,
        max_instances=scaling_settings(preset).max_instances,
        preset=preset,
    )


RECIPES: tuple[tuple[str, str], ...] = tuple((c, s) for c in CONTAINERS for s in SIZES)
"""The six recipes as (container, size) pairs (each gives a deploy, an inference and a scale
notebook)."""


def _title_from_model_id(model_id: str) -> str:
    name = model_id.rsplit("/", 1)[-1].removesuffix("-hf")
    words = []
    for word in name.replace("_", "-").split("-"):
        if re.fullmatch(r"\d+(\.\d+)?[bBmM]", word):
            words.append(word.upper())
        elif word.lower() == "llama":
            words.append("Llama")
        else:
            words.append(word[:1].upper() + word[1:])
    return " ".join(words)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def new_recipe(
    model_id: str,
    container: str,
    instance_type: str | None = None,
    *,
    prompt_format: str | None = None,
    base_size: str | None = None,
    params_billion: float | None = None,
    max_total_tokens: int | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> Recipe:
    """Return a :class:`Recipe` for another Llama variant, from what the model says itself.

    With only ``model_id`` and ``container``, the model's facts are read from the Hub
    (:func:`common.model_facts.read_model_facts`): the container's support for the model's
    architecture is checked (:func:`common.support.check_container_support`), the instance and
    the token limits come from :func:`common.sizing.size_deployment` (the cheapest instance
    that holds the weights, with a GPU count dividing the heads; ``MAX_TOTAL_TOKENS`` from its
    KV cache, capped by the context length), the inference notebook renders the model's own
    chat template with :func:`common.prompt_builder_for` and samples as its
    ``generation_config.json`` recommends. Every other argument is an override.

    Args:
        model_id: the Hugging Face model id, e.g. ``meta-llama/Llama-3.1-8B-Instruct``.
        container: ``"tgi"`` or ``"lmi"``.
        instance_type: use this instance; :meth:`Preset.validate` explains why it does not fit.
        prompt_format: ``"llama2"`` or ``"llama3"``: use that built-in builder instead of the
            model's template.
        base_size: start from the Llama 2 preset of this size (``"7b"``, ...) instead of the
            model's facts (the previous behaviour; needs ``instance_type``).
        params_billion / max_total_tokens: with ``instance_type`` and ``prompt_format``, write
            the pair without reading the Hub at all.
        token: for the Hub (default: ``HF_TOKEN``).
        revision: the model's branch, tag or commit: the facts are read there, and the deploy
            notebook pins it (``preset.revision``: TGI's ``HF_MODEL_REVISION``, LMI's
            ``option.revision`` or the weight copy).

    Raises:
        ValueError: for an unknown container, prompt format or base size, or a model id that
            is not ``owner/name``.
        common.errors.ModelFactsError: a file cannot be read from the Hub; the message says
            which, why, and the flag that supplies the fact by hand.
        common.errors.UnsupportedModelError: the pinned container does not serve the model's
            architecture; the message names the container that does.
        PresetError: for an instance type the presets do not know, or one that cannot serve
            the model.
    """
    from common.model_facts import MODEL_ID_PATTERN, read_model_facts

    _check_choice("container", container, CONTAINERS)
    if prompt_format is not None:
        _check_choice("prompt_format", prompt_format, PROMPT_FORMATS)
    if base_size is not None:
        _check_choice("base_size", base_size, SIZES)
    if not MODEL_ID_PATTERN.fullmatch(model_id):
        raise ValueError(f"model_id must look like 'owner/name' (a Hugging Face id); got "
                         f"{model_id!r}")
    if base_size is not None or (instance_type and prompt_format and params_billion
                                 and max_total_tokens):
        return _manual_recipe(model_id, container, instance_type, prompt_format=prompt_format,
                              base_size=base_size, params_billion=params_billion,
                              max_total_tokens=max_total_tokens, revision=revision)
    facts = read_model_facts(model_id, token=token, revision=revision)
    return recipe_from_facts(facts, container, instance_type, prompt_format=prompt_format,
                             max_total_tokens=max_total_tokens)


def new_recipes(
    model_id: str,
    containers: Iterable[str] = CONTAINERS,
    instance_type: str | None = None,
    *,
    prompt_format: str | None = None,
    max_total_tokens: int | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> tuple[list[Recipe], list[str]]:
    """Return a :class:`Recipe` for each container of ``containers`` that serves the model,
    reading its facts from the Hub once (``new --container both``).

    Returns:
        ``(recipes, skipped)``: the recipes, and for each container left out the sentence
        saying why (its pinned version does not serve the model's architecture).

    Raises:
        UnsupportedModelError: no container of ``containers`` serves the model (the first
            one's error, naming what would).
        ValueError, ModelFactsError, PresetError: as :func:`new_recipe`.
    """
    from common.errors import UnsupportedModelError
    from common.model_facts import read_model_facts

    wanted = tuple(containers)
    for container in wanted:
        _check_choice("container", container, CONTAINERS)
    if prompt_format is not None:
        _check_choice("prompt_format", prompt_format, PROMPT_FORMATS)
    facts = read_model_facts(model_id, token=token, revision=revision)
    recipes: list[Recipe] = []
    skipped: list[str] = []
    refusals: list[UnsupportedModelError] = []
    for container in wanted:
        try:
            recipes.append(recipe_from_facts(facts, container, instance_type,
                                             prompt_format=prompt_format,
                                             max_total_tokens=max_total_tokens))
        except UnsupportedModelError as exc:
            refusals.append(exc)
            skipped.append(f"no {container.upper()} pair: {exc}")
    if not recipes:
        raise refusals[0]
    return recipes, skipped


def recipe_from_facts(facts: Any, container: str, instance_type: str | None = None, *,
                      prompt_format: str | None = None,
                      max_total_tokens: int | None = None) -> Recipe:
    """Return the :class:`Recipe` of a model whose facts were read (see :func:`new_recipe`).

    Raises:
        UnsupportedModelError: the pinned container does not serve the model's architecture.
        ModelFactsError: no chat template and no ``prompt_format``.
        PresetError: as :func:`common.sizing.size_deployment`.
    """
    from common.sizing import size_deployment
    from common.support import check_container_support

    _check_choice("container", container, CONTAINERS)
    support = check_container_support(facts, container)
    if prompt_format is None:
        facts.prompt_builder()  # raises, with the flag to use, when there is no template
    sizing = size_deployment(facts, container, instance_type=instance_type)
    limits = {} if max_total_tokens is None else _token_limits(max_total_tokens)
    preset = dataclasses.replace(sizing.preset, **limits)
    if limits:
        preset.validate()  # what the notebook checks
    temperature, top_p, sampling_note = _sampling(facts)
    return _recipe(facts.model_id, container, sizing.instance.name,
                   prompt_format=prompt_format or "template",
                   preset_code=_sizing_code(facts.model_id, container, sizing, limits,
                                            facts.revision),
                   sizing_note=_sizing_note(sizing), temperature=temperature, top_p=top_p,
                   sampling_note=sampling_note, multimodal_note=_multimodal_note(facts),
                   messages_api_note=_messages_api_note(facts, container, prompt_format),
                   revision_arg=", revision=preset.revision",
                   support_note=support.describe(), preset=preset)


def _sampling(facts: Any) -> tuple[str, str, str]:
    """(temperature, top_p, the sentence saying where they came from) for the inference
    notebook: what ``generation_config.json`` recommends, else the recipes' 0.6 / 0.9."""
    recommended = dict(facts.sampling)
    temperature = recommended.get("temperature", 0.6)
    top_p = recommended.get("top_p", 0.9)
    if not recommended:
        note = (f"`generation_config.json` of {facts.model_id} recommends no sampling settings, "
                f"so this notebook uses the recipes' defaults: temperature {temperature:g}, "
                f"top_p {top_p:g}.")
    else:
        given = " and ".join(f"{name} {value:g}" for name, value in recommended.items())
        rest = [f"{name} {value:g}" for name, value in (("temperature", temperature),
                                                        ("top_p", top_p))
                if name not in recommended]
        note = (f"The sampling settings are the model's own: its `generation_config.json` "
                f"recommends {given}" + (f" (and the recipes' default {rest[0]} fills the gap)"
                                         if rest else "") + ".")
    return repr(float(temperature)), repr(float(top_p)), note


def _multimodal_note(facts: Any) -> str:
    if not facts.multimodal:
        return ""
    return (f"{_title_from_model_id(facts.model_id)} is a multimodal model -- it reads images as "
            "well as text -- and these notebooks serve it for text chat only: the container "
            "loads the vision tower with the rest of the weights (it counts in the GPU memory "
            "above), and every prompt here is text.")


def _messages_api_note(facts: Any, container: str, prompt_format: str | None) -> str:
    """Why TGI's Messages API cannot be used, or ``""``: TGI 3.3.6 reads a chat template from
    ``chat_template.json`` or ``tokenizer_config.json`` only (router ``server.rs``), never from
    ``chat_template.jinja``."""
    from common.support import tgi_reads_template

    if container != "tgi" or prompt_format is not None or tgi_reads_template(facts):
        return ""
    return (f"{facts.model_id} keeps its chat template in `chat_template.jinja` only, and TGI "
            "3.3.6 reads a template from `chat_template.json` or `tokenizer_config.json`: its "
            "Messages API has no template for this model and answers 422 (\"template not "
            "found\"). The prompts above are built with the model's own template instead; to "
            "use `messages`, serve it with LMI (vLLM reads `chat_template.jinja`), or publish "
            "the template in the model's `tokenizer_config.json`.")


def _token_limits(max_total_tokens: int) -> dict[str, int]:
    from common.sizing import token_limits

    return token_limits(max_total_tokens)


def _sizing_code(model_id: str, container: str, sizing: Any, limits: dict[str, int],
                 revision: str | None = None) -> str:
    instance = f', instance_type="{sizing.instance.name}"' if sizing.overridden else ""
    lines = [f'MODEL_ID = "{model_id}"']
    if revision:
        pinned = ("TGI downloads this revision (HF_MODEL_REVISION)" if container == "tgi"
                  else "the weight copy below copies this revision")
        lines += [f'REVISION = "{revision}"  # pinned: {pinned}',
                  "facts = common.read_model_facts(MODEL_ID, token=hf_token, revision=REVISION)"]
    else:
        lines.append("facts = common.read_model_facts(MODEL_ID, token=hf_token)")
    lines += [f'sizing = common.size_deployment(facts, "{container}"{instance})',
              "print(sizing.explain())",
              "preset = sizing.preset"]
    if limits:
        edits = ", ".join(f"{name}={value}" for name, value in limits.items())
        lines.append(f"preset = dataclasses.replace(preset, {edits})")
    lines += ["preset.validate()", "preset"]
    return "\n".join(lines)


def _sizing_note(sizing: Any) -> str:
    facts, preset, instance = sizing.facts, sizing.preset, sizing.instance
    how = ("the instance you chose" if sizing.overridden
           else "the cheapest instance of the table whose GPUs hold the weights")
    moe = ""
    if facts.is_moe:
        moe = (f" It is a mixture of experts: {facts.active_params_billion:.0f}B parameters "
               f"are active per token, but all {facts.params_billion:.0f}B -- every one of its "
               f"{facts.num_experts} experts per layer -- must be on the GPUs, so the weights "
               "are the safetensors index's total; the KV cache follows its language model's "
               "layers and KV heads.")
    return (
        f"`common.size_deployment` picks `{instance.name}` ({how}; {instance.gpus} GPU(s) "
        f"divide the {facts.num_attention_heads} attention and {facts.num_kv_heads} KV heads) "
        f"and sets `MAX_TOTAL_TOKENS` (`max_model_len`) to **{preset.max_total_tokens:,}** "
        f"tokens from what its KV cache holds: {facts.kv_bytes_per_token:,} bytes per token "
        f"(2 x {facts.num_layers} layers x {facts.num_kv_heads} KV heads x {facts.head_dim} "
        f"head dim x 2 bytes) into {sizing.kv_cache_bytes / 1024**3:.1f} GiB left after "
        f"{preset.weights_gib:.1f} GiB of weights = {sizing.kv_cache_tokens:,} tokens, for 4 "
        f"full requests at once, capped by the model's {facts.max_position_embeddings:,} "
        f"positions. `MAX_INPUT_TOKENS` is {preset.max_input_tokens:,}.{moe} The cell below "
        "reads the same facts from the Hub and prints this arithmetic.")


def _manual_recipe(model_id: str, container: str, instance_type: str | None, *,
                   prompt_format: str | None, base_size: str | None,
                   params_billion: float | None, max_total_tokens: int | None,
                   revision: str | None = None) -> Recipe:
    """The pair without the Hub: every fact given by hand (or a Llama 2 base preset)."""
    from common.presets import custom_preset, get_preset, instance_info, size_from_model_id

    if not instance_type or not prompt_format:
        raise ValueError("without the Hub, give --instance-type and --prompt-format "
                         "(and --params-billion, --max-total-tokens) explicitly")
    info = instance_info(instance_type)
    params = params_billion or size_from_model_id(model_id)
    edits = (f'model_id="{model_id}", instance_type="{instance_type}", '
             f"num_gpus={info.gpus}")
    if params is not None:
        edits += f", params_billion={params:g}"
    limits = {} if max_total_tokens is None else _token_limits(max_total_tokens)
    edits += "".join(f", {name}={value}" for name, value in limits.items())
    if revision:
        edits += f', revision="{revision}"'
    base = base_size or "7b"
    if params is not None:  # check now what the notebook will check
        custom_preset(model_id, container, instance_type, params_billion=params, **limits)
    preset = dataclasses.replace(  # what the notebook's dataclasses.replace builds
        get_preset(base, container), model_id=model_id, instance_type=instance_type,
        num_gpus=info.gpus, **({} if params is None else {"params_billion": params}), **limits)
    return _recipe(model_id, container, instance_type, prompt_format=prompt_format,
                   preset_args=f'"{base}", "{container}"', preset_edits=edits,
                   revision_arg=", revision=preset.revision", preset=preset)


def _recipe(model_id: str, container: str, instance_type: str, *, prompt_format: str,
            preset_args: str = "", preset_edits: str = "", preset_code: str = "",
            sizing_note: str = "", preset: Any = None, **notes: str) -> Recipe:
    from common.model_facts import LICENCES, model_family
    from common.presets import LMI_VERSION, TGI_VERSION, instance_info

    info = instance_info(instance_type)
    slug = _slug(model_id.rsplit("/", 1)[-1].removesuffix("-hf"))
    hardware, price = _hardware(instance_type)
    family = model_family(model_id) or "Llama"
    licence_name, licence_url = LICENCES.get(
        family, ("the licence on the model page", f"https://huggingface.co/{model_id}"))
    return Recipe(
        container=container,
        model_id=model_id,
        model_title=_title_from_model_id(model_id),
        instance_type=instance_type,
        directory=PurePosixPath("."),
        deploy_name=f"1-deploy-{slug}-{container}.ipynb",
        inference_name=f"2-inference-{slug}-{container}-streaming.ipynb",
        preset_args=preset_args,
        preset_edits=preset_edits,
        prompt_format=prompt_format,
        slug=f"{slug}-{container}"[:40].strip("-"),
        num_gpus=info.gpus,
        hardware=hardware,
        price_per_hour=price,
        container_version=TGI_VERSION if container == "tgi" else LMI_VERSION,
        family=family,
        licence_name=licence_name,
        licence_url=licence_url,
        preset_code=preset_code,
        sizing_note=sizing_note,
        preset=preset,
        **notes,
    )


# --------------------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _split_cells(text: str, template: str) -> list[tuple[str, str]]:
    cells: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        marker = _CELL_MARKER.match(line)
        if marker:
            cells.append((marker.group(1), []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"{template}: text before the first cell marker (line {number}): "
                             f"{line!r}. Start the template with '%%% markdown' or '%%% code'.")
    result = []
    for kind, lines in cells:
        source = "\n".join(lines).strip("\n")
        if not source.strip():
            raise ValueError(f"{template}: an empty {kind} cell; remove its marker.")
        result.append((kind, source))
    return result


def _cell_id(index: int, kind: str, source: str) -> str:
    digest = hashlib.sha1(f"{index}\0{kind}\0{source}".encode()).hexdigest()[:12]
    return f"{kind[:2]}-{index:02d}-{digest}"


def render_notebook(template: str, context: Mapping[str, Any]) -> NotebookNode:
    """Render one template into a notebook.

    Args:
        template: a file name under ``templates/``, e.g. ``tgi-deploy.ipynb.j2``.
        context: the template variables (see :meth:`Recipe.context`).

    Returns:
        A validated nbformat 4.5 notebook: python3 kernelspec, cells with stable ids, no
        outputs, no execution counts.

    Raises:
        jinja2.TemplateError: for a template error or an undefined variable.
        ValueError: for text outside a cell, or an empty cell.
    """
    text = _environment().get_template(template).render(**context)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": dict(_KERNELSPEC), "language_info": dict(_LANGUAGE_INFO)}
    for index, (kind, source) in enumerate(_split_cells(text, template)):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
        cell.id = _cell_id(index, kind, source)
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def notebook_text(notebook: NotebookNode) -> str:
    """Return the notebook as the exact text that is committed (sorted keys, final newline)."""
    text = nbformat.writes(notebook, version=4)
    return text if text.endswith("\n") else text + "\n"


def render_recipe(recipe: Recipe) -> dict[PurePosixPath, str]:
    """Render one recipe's two notebooks.

    Returns:
        ``{relative path: notebook text}`` for the deploy and the inference notebook.
    """
    from common.notebooks.estimates import deploy_estimate, inference_estimate

    context = recipe.context()
    preset = recipe.preset
    return {
        recipe.deploy_path: notebook_text(render_notebook(
            f"{recipe.container}-deploy.ipynb.j2", {**context,
                                                    "estimate": deploy_estimate(preset)})),
        recipe.inference_path: notebook_text(render_notebook(
            f"{recipe.container}-inference.ipynb.j2", {**context,
                                                       "estimate": inference_estimate(preset)})),
    }


def render_scale(recipe: Recipe) -> dict[PurePosixPath, str]:
    """Render one recipe's scale notebook (inference components and autoscaling).

    Returns:
        ``{relative path: notebook text}``.
    """
    from common.notebooks.estimates import scale_estimate
    from common.presets import scaling_settings

    preset = recipe.preset
    estimate = scale_estimate(preset, scaling_settings(preset,
                                                       max_instances=recipe.max_instances))
    return {recipe.scale_path: notebook_text(render_notebook(
        f"{recipe.container}-scale.ipynb.j2", {**recipe.context(), "estimate": estimate}))}


def scale_path(container: str, size: str, root: Path = REPO_ROOT) -> Path:
    """Return the scale notebook's path of one of the six Llama 2 recipes.

    Raises:
        ValueError: for an unknown container or size.
    """
    _check_choice("container", container, CONTAINERS)
    _check_choice("size", size, SIZES)
    directory, deploy, _ = _recipe_names(container, size)
    return root / directory / deploy.replace("1-deploy-", "3-scale-", 1)


def render_all() -> dict[PurePosixPath, str]:
    """Render every recipe notebook from the presets: deploy, inference and scale.

    Returns:
        ``{path relative to the repository root: notebook text}``, in recipe order.
    """
    rendered: dict[PurePosixPath, str] = {}
    for container, size in RECIPES:
        recipe = recipe_for(container, size)
        rendered.update(render_recipe(recipe))
        rendered.update(render_scale(recipe))
    return rendered


def write_notebooks(rendered: Mapping[PurePosixPath, str], root: Path) -> list[Path]:
    """Write rendered notebooks under ``root``, creating folders; skip unchanged files.

    Returns:
        The paths that were written (new or changed).
    """
    written = []
    for relative, text in rendered.items():
        path = root / relative
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_notebooks(root: Path = REPO_ROOT) -> list[PurePosixPath]:
    """Return the recipe notebooks' paths that are missing or differ from a fresh render."""
    differing = []
    for relative, text in render_all().items():
        path = root / relative
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            differing.append(relative)
    return differing


def new_pair(
    model_id: str,
    container: str,
    instance_type: str | None = None,
    out: Path | None = None,
    **overrides: Any,
) -> list[Path]:
    """Write a deploy + inference notebook pair for another Llama variant into ``out``.

    See :func:`new_recipe` for the arguments (``overrides`` are its keyword arguments). The
    notebooks install the requirements with ``%pip install -q -r ../../requirements.txt``; put
    ``out`` two levels below the repository root (as the recipes are) or edit that line.

    Returns:
        The two notebook paths.

    Raises:
        ValueError, common.errors.ModelFactsError, common.errors.PresetError: as
            :func:`new_recipe`.
    """
    if out is None:
        raise ValueError("out: give the folder to write the pair to")
    return write_recipe(new_recipe(model_id, container, instance_type, **overrides), out)


def write_recipe(recipe: Recipe, out: Path) -> list[Path]:
    """Render ``recipe``'s deploy and inference notebooks into ``out``; return their paths."""
    rendered = render_recipe(recipe)
    write_notebooks(rendered, out)
    return [out / relative for relative in rendered]


def recipe_summary(recipe: Recipe) -> str:
    """Return a few plain lines saying what a recipe deploys: model, container, instance and,
    for a pair that ``new`` sized from the Hub, the token limits and the arithmetic behind them."""
    price = ("" if recipe.price_per_hour is None
             else f"; about ${recipe.price_per_hour:.2f}/h on demand in us-east-1")
    lines = [f"{recipe.model_title} ({recipe.model_id}) on {_CONTAINER_LABELS[recipe.container]} "
             f"{recipe.container_version}: {recipe.instance_type} ({recipe.hardware}{price})"]
    for note in (recipe.support_note, recipe.sizing_note, recipe.sampling_note,
                 recipe.multimodal_note, recipe.messages_api_note):
        if note:
            lines.append(note.replace("`", "").replace("**", ""))
    return "\n".join(lines) + "\n"
