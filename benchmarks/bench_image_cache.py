"""Image paths: epochs after the first with the decoded-image cache vs decoding every photo every epoch.

The ants-vs-bees training photos (245 JPEGs of about 500x375 px) feed a training epoch with random
augmentation (random resized crop to 32 px, horizontal flip):

- re-decoding: ``InputDataset`` (what ``PretrainedFineTuner`` does today) opens, decodes and
  augments every photo in every epoch;
- cached: ``DecodedImageDataset`` decodes each photo once, resized to a short side of
  ``--short-side`` px (``uint8``, bounded cache), and only augments it in later epochs; the first
  epoch fills the cache with ``predecode`` (DataLoader workers decoding in parallel).

Rows: the data pipeline alone (iterating the DataLoader); a training epoch of a linear head on a
frozen CIFAR-10 ResNet20 in a hand-written loop, where the backbone's forward pass is the same on both
sides; and the same training through ``PretrainedFineTuner`` itself, ``image_cache_mb=0`` (decode
every epoch) against the default (decode once per fit, to the resize size before cropping), epoch
times from skorch's history. Target: >= 3x for epochs after the first.

    python benchmarks/bench_image_cache.py [--epochs 4] [--workers 2] [--threads 1]
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
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import CifarResNet, checkpoint_path  # noqa: E402
from benchmarks.finetune_transfer import image_folder  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402
from skadapt.finetune._adapters import adapt_inputs  # noqa: E402
from skadapt.finetune._datasets import InputDataset  # noqa: E402
from skadapt.finetune._freezing import apply_freeze, frozen_at_epoch  # noqa: E402
from skadapt.finetune._image_cache import DecodedImageDataset, make_decode_transform  # noqa: E402
from skadapt.finetune._transforms import make_transform  # noqa: E402
from skadapt.networks import resolve_network  # noqa: E402

BATCH_SIZE = 32


def frozen_resnet20():
    torch.manual_seed(0)
    network = resolve_network(CifarResNet(20), str(checkpoint_path(20)), n_outputs=2)
    frozen = frozen_at_epoch(network, 0, freeze="backbone", unfreeze_at=None, unfreeze="all",
                             unfreeze_every=None)
    frozen_bn = apply_freeze(network.module, frozen)
    head = [p for p in network.module.parameters() if p.requires_grad]
    return network.module, frozen_bn, torch.optim.AdamW(head, lr=1e-3)


def epoch_times(make_dataset, epochs: int, workers: int, train: bool) -> list[float]:
    """Seconds per epoch; ``make_dataset`` runs inside the first epoch (it may decode)."""
    model, frozen_bn, optimizer = frozen_resnet20()
    times = []
    start = time.perf_counter()
    dataset = make_dataset()
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)
    for _ in range(epochs):
        model.train()
        for bn in frozen_bn:
            bn.eval()
        for xb, yb in loader:
            if train:
                optimizer.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                optimizer.step()
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times


def estimator_epoch_times(paths, labels, epochs: int, size: int, image_cache_mb) -> list[float]:
    """Seconds per epoch of ``PretrainedFineTuner.fit``; the first includes decoding the cache."""
    clf = PretrainedFineTuner(CifarResNet(20), weights=str(checkpoint_path(20)), freeze="backbone",
                              image_size=size, max_epochs=epochs, batch_size=BATCH_SIZE,
                              validation_fraction=None, image_cache_mb=image_cache_mb,
                              random_state=0)
    start = time.perf_counter()
    clf.fit(paths, labels)
    total = time.perf_counter() - start
    durations = list(clf.history[:, "dur"])
    return [total - sum(durations[1:]), *durations[1:]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=32, help="crop size fed to the network")
    parser.add_argument("--short-side", type=int, default=64, help="size the cache keeps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths, labels = image_folder("train")
    y = (np.asarray(labels) == "bees").astype(np.int64)
    augment = make_transform("files", train=True, image_size=args.size)

    def redecoding():
        return InputDataset(adapt_inputs(paths), y, transform=augment)

    def cached(workers):
        def make():
            dataset = DecodedImageDataset(paths, y, decode=make_decode_transform(args.short_side),
                                          transform=augment)
            dataset.predecode(num_workers=workers)
            return dataset
        return make

    cases = [(f"data pipeline, {w} workers", w, False) for w in sorted({0, args.workers})]
    cases.append(("training epoch (frozen ResNet20, linear head), 0 workers", 0, True))
    rows = []
    for label, workers, train in cases:
        slow = epoch_times(redecoding, args.epochs, workers, train)
        fast = epoch_times(cached(workers), args.epochs, workers, train)
        rows.append((label, slow, fast))
        print(f"done: {label}", file=sys.stderr)
    label = "PretrainedFineTuner.fit epoch (frozen ResNet20, augmentation on), 0 workers"
    rows.append((label, estimator_epoch_times(paths, labels, args.epochs, args.size, 0),
                 estimator_epoch_times(paths, labels, args.epochs, args.size, 1024)))

    print(f"\n{len(paths)} ants/bees photos, random resized crop to {args.size} px + flip, cache "
          f"keeps a {args.short_side} px short side, batch {BATCH_SIZE}, median of epochs 2-"
          f"{args.epochs}, torch threads {torch.get_num_threads()}\n")
    print("| epoch | re-decoding (s) | cached (s) | speed-up, epochs 2+ | first epoch: re-decoding "
          "/ cached incl. decoding (s) |")
    print("| --- | --- | --- | --- | --- |")
    for label, slow, fast in rows:
        later_slow, later_fast = statistics.median(slow[1:]), statistics.median(fast[1:])
        print(f"| {label} | {later_slow:.3f} | {later_fast:.3f} | {later_slow / later_fast:.1f}x | "
              f"{slow[0]:.2f} / {fast[0]:.2f} |")


if __name__ == "__main__":
    main()
