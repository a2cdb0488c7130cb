"""Which model architectures the pinned containers serve, read from their sources.

A container looks a model up by what its ``config.json`` says: TGI by ``model_type``
(text-generation-inference v3.3.6, ``server/text_generation_server/models/__init__.py``: the
``ModelType`` list and ``get_model``), LMI's vLLM engine by ``architectures[0]`` (vLLM's model
registry, ``vllm/model_executor/models/registry.py``). :func:`container_support` answers for
one model and one container; :func:`check_container_support` raises
:class:`~common.errors.UnsupportedModelError` -- naming the container (and version) that does
serve it -- for one that does not. ``python -m common.notebooks new`` calls it before it writes
a pair.

The tables are data copied from those sources (DESIGN.md, "Any Llama variant (issue 20)", cites
them and their versions): change them with :data:`common.presets.TGI_VERSION` /
:data:`common.presets.LMI_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import UnsupportedModelError
from common.model_facts import ModelFacts
from common.presets import LMI_VERSION, TGI_VERSION

__all__ = [
    "LMI_ARCHITECTURES",
    "LMI_VLLM_VERSION",
    "SERVED_BY_OTHER_VERSIONS",
    "TGI_MODEL_TYPES",
    "TGI_TEMPLATE_FILES",
    "Support",
    "check_container_support",
    "container_support",
    "serving_containers",
    "tgi_reads_template",
]

LMI_VLLM_VERSION = "0.23.1"
"""The vLLM that LMI 0.36.0 (LMI v27) ships: djl-serving branch 0.36.0-lmi27-dlc,
``serving/docker/lmi-container-requirements.txt`` (``vllm-0.23.1.dev4+gcd87ce883``)."""

TGI_MODEL_TYPES: frozenset[str] = frozenset({
    # text-generation-inference v3.3.6, ModelType in server/text_generation_server/models/
    # __init__.py (llama4 through its Transformers backend; mllama, idefics, idefics2/3 and
    # llava_next are the multimodal ones).
    "baichuan", "bloom", "cohere", "dbrx", "deepseek_v2", "deepseek_v3", "falcon",
    "galactica", "gemma", "gemma2", "gemma3", "gemma3_text", "gpt2", "gpt_bigcode",
    "gpt_neox", "gptj", "granite", "idefics", "idefics2", "idefics3", "llama", "llama4",
    "llava_next", "mamba", "mistral", "mixtral", "mllama", "mpt", "opt", "paligemma", "phi",
    "phi3", "phimoe", "qwen2", "qwen2_5_vl", "qwen2_vl", "santacoder", "starcoder2", "t5",
})
"""The ``model_type`` values TGI 3.3.6 names as served. (``get_model`` also tries any other
causal LM that transformers knows, unsharded and without its fast kernels; a recipe does not
rely on that.)"""

LMI_ARCHITECTURES: frozenset[str] = frozenset({
    # vLLM's registry: _TEXT_GENERATION_MODELS, _MULTIMODAL_MODELS and
    # _TRANSFORMERS_SUPPORTED_MODELS (decoder models; read at vllm-project/vllm 0002bff0, the
    # vLLM 0.2x line -- the Llama entries are the same at the 0.23.1 that LMI 0.36.0 ships).
    "AfmoeForCausalLM", "ApertusForCausalLM", "AquilaForCausalLM", "AquilaModel",
    "ArceeForCausalLM", "ArcticForCausalLM", "AriaForConditionalGeneration",
    "AudioFlamingo3ForConditionalGeneration", "AyaVisionForConditionalGeneration",
    "BagelForConditionalGeneration", "BaiChuanForCausalLM", "BaichuanForCausalLM",
    "BailingMoeForCausalLM", "BailingMoeV2ForCausalLM", "BambaForCausalLM",
    "BeeForConditionalGeneration", "Blip2ForConditionalGeneration", "BloomForCausalLM",
    "ChameleonForConditionalGeneration", "ChatGLMForConditionalGeneration", "ChatGLMModel",
    "Cohere2ForCausalLM", "Cohere2VisionForConditionalGeneration", "CohereForCausalLM",
    "CwmForCausalLM", "DbrxForCausalLM", "DeciLMForCausalLM", "DeepseekForCausalLM",
    "DeepseekOCRForCausalLM", "DeepseekV2ForCausalLM", "DeepseekV32ForCausalLM",
    "DeepseekV3ForCausalLM", "DeepseekVLV2ForCausalLM", "Dots1ForCausalLM",
    "DotsOCRForCausalLM", "Emu3ForConditionalGeneration", "Ernie4_5ForCausalLM",
    "Ernie4_5_MoeForCausalLM", "Ernie4_5_VLMoeForConditionalGeneration",
    "Exaone4ForCausalLM", "ExaoneForCausalLM", "Fairseq2LlamaForCausalLM",
    "FalconForCausalLM", "FalconH1ForCausalLM", "FalconMambaForCausalLM",
    "FlexOlmoForCausalLM", "FuyuForCausalLM", "GLM4VForCausalLM", "GPT2LMHeadModel",
    "GPTBigCodeForCausalLM", "GPTJForCausalLM", "GPTNeoXForCausalLM", "Gemma2ForCausalLM",
    "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", "Gemma3nForCausalLM",
    "Gemma3nForConditionalGeneration", "GemmaForCausalLM", "Glm4ForCausalLM",
    "Glm4MoeForCausalLM", "Glm4vForConditionalGeneration",
    "Glm4vMoeForConditionalGeneration", "GlmAsrForConditionalGeneration", "GlmForCausalLM",
    "GptOssForCausalLM", "GraniteForCausalLM", "GraniteMoeForCausalLM",
    "GraniteMoeHybridForCausalLM", "GraniteMoeSharedForCausalLM",
    "GraniteSpeechForConditionalGeneration", "GritLM", "Grok1ModelForCausalLM",
    "H2OVLChatModel", "HCXVisionForCausalLM", "HunYuanDenseV1ForCausalLM",
    "HunYuanMoEV1ForCausalLM", "HunYuanVLForConditionalGeneration",
    "Idefics3ForConditionalGeneration", "InternLM2ForCausalLM", "InternLM2VEForCausalLM",
    "InternLM3ForCausalLM", "InternLMForCausalLM", "InternS1ForConditionalGeneration",
    "InternVLChatModel", "InternVLForConditionalGeneration",
    "IsaacForConditionalGeneration", "JAISLMHeadModel", "Jais2ForCausalLM",
    "JambaForCausalLM", "KeyeForConditionalGeneration", "KeyeVL1_5ForConditionalGeneration",
    "KimiLinearForCausalLM", "KimiVLForConditionalGeneration", "LLaMAForCausalLM",
    "Lfm2ForCausalLM", "Lfm2MoeForCausalLM", "LightOnOCRForConditionalGeneration",
    "Llama4ForCausalLM", "Llama4ForConditionalGeneration", "LlamaForCausalLM",
    "Llama_Nemotron_Nano_VL", "LlavaForConditionalGeneration",
    "LlavaNextForConditionalGeneration", "LlavaNextVideoForConditionalGeneration",
    "LlavaOnevisionForConditionalGeneration", "LongcatFlashForCausalLM", "MPTForCausalLM",
    "Mamba2ForCausalLM", "MambaForCausalLM", "MantisForConditionalGeneration",
    "MiDashengLMModel", "MiMoForCausalLM", "MiMoV2FlashForCausalLM", "MiniCPM3ForCausalLM",
    "MiniCPMForCausalLM", "MiniCPMO", "MiniCPMV", "MiniMaxForCausalLM",
    "MiniMaxM1ForCausalLM", "MiniMaxM2ForCausalLM", "MiniMaxText01ForCausalLM",
    "MiniMaxVL01ForConditionalGeneration", "Mistral3ForConditionalGeneration",
    "MistralForCausalLM", "MistralLarge3ForCausalLM", "MixtralForCausalLM",
    "MolmoForCausalLM", "MoonshotKimiaForCausalLM", "MptForCausalLM", "NVLM_D",
    "NemotronForCausalLM", "NemotronHForCausalLM", "NemotronH_Nano_VL_V2", "OPTForCausalLM",
    "Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoForCausalLM", "OlmoeForCausalLM",
    "OpenCUAForConditionalGeneration", "OrionForCausalLM", "OuroForCausalLM", "Ovis",
    "Ovis2_5", "PaddleOCRVLForConditionalGeneration", "PaliGemmaForConditionalGeneration",
    "PanguEmbeddedForCausalLM", "PanguProMoEV2ForCausalLM", "PanguUltraMoEForCausalLM",
    "PersimmonForCausalLM", "Phi3ForCausalLM", "Phi3VForCausalLM", "Phi4MMForCausalLM",
    "PhiForCausalLM", "PhiMoEForCausalLM", "PixtralForConditionalGeneration",
    "Plamo2ForCausalLM", "Plamo3ForCausalLM", "QWenLMHeadModel",
    "Qwen2AudioForConditionalGeneration", "Qwen2ForCausalLM", "Qwen2MoeForCausalLM",
    "Qwen2VLForConditionalGeneration", "Qwen2_5OmniForConditionalGeneration",
    "Qwen2_5OmniModel", "Qwen2_5_VLForConditionalGeneration", "Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM", "Qwen3OmniMoeForConditionalGeneration",
    "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration",
    "QwenVLForConditionalGeneration", "RForConditionalGeneration", "RWForCausalLM",
    "SeedOssForCausalLM", "SkyworkR1VChatModel", "SmolLM3ForCausalLM",
    "SmolVLMForConditionalGeneration", "SolarForCausalLM", "StableLMEpochForCausalLM",
    "StableLmForCausalLM", "Starcoder2ForCausalLM", "Step3TextForCausalLM",
    "Step3VLForConditionalGeneration", "Tarsier2ForConditionalGeneration",
    "TarsierForConditionalGeneration", "TeleChat2ForCausalLM", "TeleChatForCausalLM",
    "TeleFLMForCausalLM", "UltravoxModel", "VoxtralForConditionalGeneration",
    "VoxtralStreamingGeneration", "XverseForCausalLM", "Zamba2ForCausalLM"
})
"""The ``architectures`` values vLLM 0.23 (LMI 0.36.0) serves as text or multimodal models."""

SERVED_BY_OTHER_VERSIONS: dict[tuple[str, str], str] = {
    ("lmi", "MllamaForConditionalGeneration"):
        "vLLM served it up to version 0.10.2, the one LMI 0.34.0 (LMI v16) ships; vLLM's "
        "registry lists it among the models it no longer serves, and djl-serving 0.36.0 "
        "dropped its test: 'MLlama is not supported in vllm v1'",
}
"""What serves an architecture a pinned container no longer does: (container, architecture or
model_type) -> where to find it."""

TGI_TEMPLATE_FILES: tuple[str, ...] = ("chat_template.json", "tokenizer_config.json")
"""Where TGI 3.3.6 reads a chat template from, first one first (router ``server.rs``: a
``chat_template.json`` replaces ``tokenizer_config.json``'s; ``processor_config.json`` comes
last). It never reads ``chat_template.jinja``, which transformers >= 4.47 saves."""

_LABELS = {"tgi": f"TGI {TGI_VERSION}", "lmi": f"LMI {LMI_VERSION} (vLLM {LMI_VLLM_VERSION})"}


@dataclass(frozen=True)
class Support:
    """Whether one container serves one model.

    Attributes:
        container: ``"tgi"`` or ``"lmi"``.
        served: ``True`` / ``False``; ``None`` when the configuration does not say what the
            container looks up (no ``model_type`` / ``architectures``): not checked.
        looked_up: what was looked up, e.g. ``model_type 'llama4'`` or ``architecture
            'Llama4ForConditionalGeneration'``.
        note: a sentence more (where an older version served it), or ``""``.
    """

    container: str
    served: bool | None
    looked_up: str
    note: str = ""

    @property
    def label(self) -> str:
        """The container and its pinned version, e.g. ``TGI 3.3.6``."""
        return _LABELS[self.container]

    def describe(self) -> str:
        """One sentence: ``TGI 3.3.6 serves model_type 'llama' ...``."""
        if self.served is None:
            return f"{self.label}: not checked ({self.looked_up} not in config.json)"
        verb = "serves" if self.served else "does not serve"
        return f"{self.label} {verb} {self.looked_up}" + (f": {self.note}" if self.note else "")


def container_support(facts: ModelFacts, container: str) -> Support:
    """Return whether ``container`` (at its pinned version) serves the model of ``facts``.

    Raises:
        ValueError: an unknown container.
    """
    if container == "tgi":
        key = facts.model_type
        looked_up = f"model_type {key!r}" if key else "model_type"
        served = None if not key else key in TGI_MODEL_TYPES
    elif container == "lmi":
        key = facts.architectures[0] if facts.architectures else None
        looked_up = f"architecture {key!r}" if key else "architectures"
        served = None if not key else key in LMI_ARCHITECTURES
    else:
        raise ValueError(f"container is {container!r}: use 'tgi' or 'lmi'")
    note = SERVED_BY_OTHER_VERSIONS.get((container, key or ""), "") if served is False else ""
    return Support(container=container, served=served, looked_up=looked_up, note=note)


def serving_containers(facts: ModelFacts) -> tuple[str, ...]:
    """The containers (``"tgi"``, ``"lmi"``) whose pinned version serves the model (or could
    not be checked)."""
    return tuple(c for c in ("tgi", "lmi") if container_support(facts, c).served is not False)


def check_container_support(facts: ModelFacts, container: str) -> Support:
    """Return :func:`container_support` when ``container`` serves the model (or it cannot be
    checked).

    Raises:
        UnsupportedModelError: the pinned container does not serve it; the message names what
            it looked up, where an older version served it, and the container that does
            serve it (with the ``new`` flag to pick it).
        ValueError: an unknown container.
    """
    support = container_support(facts, container)
    if support.served is not False:
        return support
    other = "lmi" if container == "tgi" else "tgi"
    alternative = container_support(facts, other)
    served_by = []
    if support.note:
        served_by.append(support.note)
    if alternative.served:
        served_by.append(f"{alternative.label} serves {alternative.looked_up}")
        fix = f"write the pair for it with --container {other}"
    else:
        fix = ("neither pinned container serves it: check the supported models of a newer TGI "
               "or LMI release and set the preset's container_version")
    where = "".join(f" {sentence}." for sentence in served_by)
    raise UnsupportedModelError(
        f"{support.label} does not serve {facts.model_id}: it looks models up by "
        f"{support.looked_up.split(' ')[0]}, and {support.looked_up} is not among those it "
        f"serves.{where} Fix: {fix}.",
        container=container, model_type=facts.model_type,
        architecture=facts.architectures[0] if facts.architectures else None,
        served_by=tuple(served_by))


def tgi_reads_template(facts: ModelFacts) -> bool:
    """Whether TGI 3.3.6 finds the model's chat template (one of :data:`TGI_TEMPLATE_FILES`
    holds one); without it, TGI's Messages API answers 422 "template not found"."""
    return any(name in facts.template_files for name in TGI_TEMPLATE_FILES)
