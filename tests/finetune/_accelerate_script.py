"""A data-parallel fit, run by ``tests/finetune/test_accelerate.py`` under several processes.

``accelerate launch --cpu --num_processes 2 tests/finetune/_accelerate_script.py OUT`` (or
``python -m torch.distributed.run --nproc_per_node 2 ...``) fits :func:`fit_case`'s estimators with
``batch_size=BATCH`` per process, and the main process saves their final weights and histories to
``OUT`` (``torch.save``). The test compares them with a single process fitting the same global batch
(``BATCH x processes``): the same cases, imported from this module.

The network has no batch norm and no dropout (nothing in a step depends on how the global batch is
split), the staged unfreezing thaws the backbone at epoch 2 (the DDP wrapper is rebuilt), and a
quarter of the samples is held out (``valid_loss`` gathered over the processes); the ordered fit
then continues with ``partial_fit`` (the network, unwrapped after ``fit``, is wrapped again).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

BATCH = 4  # per process
N_SAMPLES = 64  # 48 train + 16 valid: multiples of the global batch with 2 processes
CASES = ("ordered", "shuffled")


def task(n: int = N_SAMPLES, seed: int = 0):
    """Three classes of points in 6 dimensions."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = np.argmax(X[:, :3] + 0.3 * rng.normal(size=(n, 3)), axis=1)
    return X, y


def network() -> nn.Module:
    """A 'pretrained' MLP: two backbone groups and a head replaced by the fine-tuner."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 5))


def params(case: str, batch_size: int) -> dict:
    """The estimator's parameters in ``case``: ``"ordered"`` batches (no shuffling) or
    ``"shuffled"`` ones (one seeded order shared by every process)."""
    return dict(freeze="backbone", unfreeze_at=2, lr=0.05, max_epochs=4, batch_size=batch_size,
                validation_fraction=0.25, patience=None, feature_cache=False, random_state=0,
                iterator_train__shuffle=case == "shuffled")


def fit_case(case: str, batch_size: int, accelerator=None):
    """Fit ``case``: the accelerated classifier with ``accelerator``, or (None) the plain one."""
    from skadapt import AcceleratedFineTuner, PretrainedFineTuner

    X, y = task()
    if accelerator is None:
        model = PretrainedFineTuner(network(), device="cpu", **params(case, batch_size))
    else:
        model = AcceleratedFineTuner(network(), accelerator=accelerator, **params(case, batch_size))
    return model.fit(X, y)


def result(model) -> dict:
    """What the test compares: the final weights, the losses and what each epoch trained."""
    return {"state": {k: v.detach().cpu().clone() for k, v in model.module_.state_dict().items()},
            "train_loss": list(model.history[:, "train_loss"]),
            "valid_loss": list(model.history[:, "valid_loss"]),
            "n_trainable": list(model.history[:, "n_trainable"]),
            "lr": list(model.history[:, "lr"]),
            "proba": model.predict_proba(task()[0])}


def validation_splits(accelerator) -> list:
    """The training indices of the internal validation split that each process uses, without
    ``random_state`` (each process's own NumPy random state would draw another split)."""
    from accelerate.utils import gather_object

    from skadapt import AcceleratedFineTuner

    model = AcceleratedFineTuner(network(), accelerator=accelerator,
                                 **{**params("ordered", BATCH), "random_state": None})
    train_idx, _ = model._validation_split(task()[1], 0.25)
    return gather_object([sorted(np.asarray(train_idx).tolist())])


def main(out: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    results = {"num_processes": accelerator.num_processes,
               "validation_splits": validation_splits(accelerator)}
    for case in CASES:
        model = fit_case(case, BATCH, accelerator)
        results[case] = result(model)
        if case == "ordered":  # partial_fit: the unwrapped network is wrapped again
            results["continued"] = result(model.partial_fit(*task()))
    if accelerator.is_main_process:
        torch.save(results, out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
