"""Hugging Face image models (ViT, DINOv2, ConvNeXt, ResNet...): a local folder, or a hub id.

A folder (or a hub id already in the Hugging Face cache) is an image model when its
``config.json`` has ``num_channels``; other folders and ids are text encoders. A hub id that is
not in the cache cannot be told apart offline: download the model once (or save it to a folder
with ``save_pretrained``) and pass the folder.

The encoder is loaded with ``transformers.AutoModel`` (its pooling layer off where it has one:
ViT's pooler is not part of classification checkpoints), from the folder's weights (``weights``
must be None, as for text encoders). The new head, a ``nn.Linear`` named ``head``, reads the
encoder's pooled output when it has one (ConvNeXt, ResNet: the normalized mean of the last
feature map), else its first token's final state (ViT, DINOv2: the ``[CLS]`` token, as their
``ForImageClassification`` heads read it).

Layer groups, as for text encoders: the embeddings (the encoder's first part), then each entry of
its repeated layers (the ``nn.ModuleList`` holding the most parameters: ViT's ``layers``,
ConvNeXt's ``encoder.stages``); a final norm joins the last group.

Preprocessing: the folder's image-processor config (``preprocessor_config.json``:
``size``, ``crop_size``/``crop_pct``, ``image_mean``, ``image_std``, ``resample``); skadapt resizes
the shorter side and centre-crops, where ViT's processor squashes to a square (the same for
square images).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from skadapt.networks._base import (
    LayerGroup,
    Preprocessing,
    ResolvedNetwork,
    Source,
    groups_before_and_in_layers,
)
from skadapt.networks._saved_architecture import saved_folder
from skadapt.networks._source_hf_text import (
    _load_error,
    _quiet,
    auto_model,
    refuse_weights_and_head,
)

_INSTALL_HINT = "pip install skadapt[text]"  # transformers is the text extra's
# PIL's resampling filters, by the integers Hugging Face configs store
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_CROP_PCT_BELOW = 384  # Hugging Face applies crop_pct to shortest edges below this size


def _config(model) -> dict | None:
    """The model's config.json, from its folder or the hub cache (never downloaded here)."""
    model = saved_folder(model) or model  # a saved model being loaded (skadapt.load)
    if isinstance(model, os.PathLike) or (isinstance(model, str) and Path(model).is_dir()):
        path = Path(model) / "config.json"
        return json.loads(path.read_text()) if path.is_file() else None
    if not isinstance(model, str) or model.count("/") != 1 or Path(model).exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = try_to_load_from_cache(model, "config.json")
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


def _claims(model) -> bool:
    try:
        config = _config(model)
    except (OSError, ValueError):
        return False
    return config is not None and "num_channels" in config


class VisionEncoderNetwork(nn.Module):
    """A pretrained Hugging Face image encoder, its pooled features, and a new linear head.

    Parameters
    ----------
    backbone : transformers.PreTrainedModel
        From ``AutoModel``: returns ``last_hidden_state`` and, for CNNs, ``pooler_output``.
    n_outputs : int
        Outputs of the new head.

    Examples
    --------
    >>> from transformers import ViTConfig, ViTModel
    >>> config = ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                    intermediate_size=16, image_size=16, patch_size=8)
    >>> net = VisionEncoderNetwork(ViTModel(config, add_pooling_layer=False), n_outputs=3)
    >>> net(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 3])
    """

    def __init__(self, backbone: nn.Module, n_outputs: int):
        super().__init__()
        self.backbone = backbone
        config = backbone.config
        width = getattr(config, "hidden_size", None) or config.hidden_sizes[-1]
        self.head = nn.Linear(width, n_outputs)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.backbone(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state[:, 0]  # the [CLS] token
        return self.head(pooled.flatten(1))


def _resolve(model, weights, *, n_outputs: int, head, example_input, options) -> ResolvedNetwork:
    refuse_weights_and_head(weights, head, "a Hugging Face image model")
    backbone, processor = _load(model)
    module = VisionEncoderNetwork(backbone, n_outputs)
    return ResolvedNetwork(module=module, head=("head",), groups=_groups(module),
                           preprocessing=_preprocessing(processor, backbone.config),
                           source="huggingface-vision")


SOURCE = Source(name="huggingface-vision", priority=15, claims=_claims, resolve=_resolve)


def _load(model):
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"Hugging Face image models need the transformers package: "
                          f"{_INSTALL_HINT}") from error
    saved = saved_folder(model)
    source = os.fspath(model if saved is None else saved)
    with _quiet(transformers):
        try:
            backbone = auto_model(transformers, source, pretrained=saved is None)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(_load_error(source, error).replace(
                "and the tokenizer files", "and preprocessor_config.json").replace(
                "tokenizer.save_pretrained", "image_processor.save_pretrained")) from error
        if saved is not None:  # loading a saved model: its preprocessing is saved beside it
            return backbone, None
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError, KeyError):
            processor = None  # no preprocessor_config.json: the config's image_size, ImageNet stats
    return backbone, processor


def _groups(module: VisionEncoderNetwork) -> tuple[LayerGroup, ...]:
    """The embeddings, then each repeated layer (stage); later parameters join the last one."""
    backbone = module.backbone
    lists = [(name, sum(p.numel() for p in sub.parameters()))
             for name, sub in backbone.named_modules() if isinstance(sub, nn.ModuleList)]
    holding = [name for name, sub in backbone.named_children() if any(True for _ in sub.parameters())]
    if not lists or not holding:
        raise ValueError(f"{type(backbone).__name__} has no nn.ModuleList of layers or stages: "
                         "skadapt fine-tunes image encoders built as a stack of them.")
    layers = max(lists, key=lambda item: item[1])[0]
    layer_names = [f"backbone.{layers}.{i}" for i in range(len(backbone.get_submodule(layers)))]
    first = f"backbone.{holding[0]}"
    return groups_before_and_in_layers(module, first, layer_names)


def _get(mapping, key):
    if mapping is None:
        return None
    return mapping.get(key) if isinstance(mapping, dict) else getattr(mapping, key, None)


def _preprocessing(processor, config) -> Preprocessing | None:
    if processor is None:
        side = getattr(config, "image_size", None)
        if not isinstance(side, int):
            return None
        return Preprocessing(resize_size=round(side / 0.875), crop_size=side,
                             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             interpolation="bilinear")
    size = getattr(processor, "size", None)
    crop = _get(getattr(processor, "crop_size", None), "height")
    height, shortest = _get(size, "height"), _get(size, "shortest_edge")
    crop_pct = getattr(processor, "crop_pct", None)
    if height is not None:
        resize = height
        crop = crop if getattr(processor, "do_center_crop", False) and crop else height
    elif shortest is not None:
        if crop_pct and shortest < _CROP_PCT_BELOW:
            resize, crop = math.floor(shortest / crop_pct), shortest
        else:
            resize = shortest
            crop = crop if getattr(processor, "do_center_crop", False) and crop else shortest
    else:
        return None
    resample = getattr(processor, "resample", 2)
    interpolation = _RESAMPLE.get(int(resample), "bilinear") if resample is not None \
        else "bilinear"
    return Preprocessing(resize_size=int(resize), crop_size=int(crop),
                         mean=tuple(float(m) for m in processor.image_mean),
                         std=tuple(float(s) for s in processor.image_std),
                         interpolation=interpolation)
