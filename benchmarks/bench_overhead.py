"""Training overhead: PretrainedFineTuner's epoch time against a minimal hand-written PyTorch loop.

Both train the same network (CIFAR-10 ResNet20 checkpoint, new 2-class head) on the same data (the
ants-vs-bees training photos, decoded once to 32x32 arrays so that decoding is not measured), with
the same batch size, optimizer (AdamW, constant learning rate), shuffling and frozen/unfrozen
parameters. Rounds alternate between the two so that machine load hits both alike; an epoch is timed
from the end of the previous one, so every per-epoch cost (callbacks, history) is in it. The first
epoch of each run (warm-up) is left out. Target: ratio <= 1.05.

    python benchmarks/bench_overhead.py [--rounds 3] [--epochs 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import CifarResNet, checkpoint_path  # noqa: E402
from benchmarks.finetune_transfer import image_folder  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402
from skadapt.finetune._adapters import adapt_inputs  # noqa: E402
from skadapt.finetune._datasets import InputDataset  # noqa: E402
from skadapt.finetune._freezing import apply_freeze, frozen_at_epoch  # noqa: E402
from skadapt.finetune._transforms import make_transform  # noqa: E402
from skadapt.networks import resolve_network  # noqa: E402

BATCH_SIZE = 32
LR = 1e-3


def photos_as_arrays(size: int) -> tuple[np.ndarray, np.ndarray]:
    paths, labels = image_folder("train")
    dataset = InputDataset(adapt_inputs(paths), transform=make_transform("files", train=False,
                                                                          image_size=size))
    X = torch.stack([dataset[i][0] for i in range(len(dataset))]).numpy()
    return X, (labels == "bees").astype(np.int64)


class EpochClock(Callback):
    """Seconds from the end of one epoch to the end of the next (the first epoch is not timed)."""

    def on_train_begin(self, net, **kwargs):
        self.times, self._last = [], None

    def on_epoch_end(self, net, **kwargs):
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def estimator_epochs(X, y, freeze: str, epochs: int) -> list[float]:
    clock = EpochClock()
    clf = PretrainedFineTuner(
        CifarResNet(20), weights=str(checkpoint_path(20)), freeze=freeze, lr=LR,
        lr_schedule="constant", warmup=0.0, max_epochs=epochs, batch_size=BATCH_SIZE,
        validation_fraction=None, num_workers=0, random_state=0, callbacks=[("clock", clock)])
    clf.fit(X, y)
    return clock.times


def hand_loop_epochs(X, y, freeze: str, epochs: int) -> list[float]:
    """What a user would write: the same network, frozen the same way, trained by hand."""
    torch.manual_seed(0)
    network = resolve_network(CifarResNet(20), str(checkpoint_path(20)), n_outputs=2)
    model = network.module
    frozen = frozen_at_epoch(network, 0, freeze=freeze, unfreeze_at=None, unfreeze="all",
                             unfreeze_every=None)
    frozen_bn = apply_freeze(model, frozen)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
                        batch_size=BATCH_SIZE, shuffle=True)
    times, last = [], None
    for _ in range(epochs):
        model.train()
        for bn in frozen_bn:
            bn.eval()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="per run; the first is warm-up")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, y = photos_as_arrays(args.size)

    rows = []
    for label, freeze in (("full fine-tune", "none"), ("frozen backbone (head only)", "backbone")):
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours += estimator_epochs(X, y, freeze, args.epochs)
            theirs += hand_loop_epochs(X, y, freeze, args.epochs)
        rows.append((label, statistics.median(ours), statistics.median(theirs)))
        print(f"done: {label}", file=sys.stderr)

    print(f"\nResNet20 (CIFAR-10 checkpoint), {len(X)} ants/bees photos as {args.size}x{args.size} "
          f"arrays, batch {BATCH_SIZE}, AdamW, median of {args.rounds * (args.epochs - 1)} epochs "
          f"per side, torch threads {torch.get_num_threads()}\n")
    print("| training | PretrainedFineTuner (s/epoch) | hand-written loop (s/epoch) | ratio |")
    print("| --- | --- | --- | --- |")
    for label, ours, theirs in rows:
        print(f"| {label} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.3f}x |")


if __name__ == "__main__":
    main()
