"""Does transfer help? CIFAR-10 ResNet20 adapted to the ants-vs-bees photos, four strategies.

Trains on the official ``train`` split (245 photos) and scores on ``val`` (153 photos) at 96 px:
a linear probe (frozen backbone), a two-stage fine-tune, a full fine-tune, and the same network from
random initialization. Prints accuracy and wall time of each, with ratios against the random-init
baseline run in the same process.

    python benchmarks/finetune_transfer.py [--epochs 12] [--depth 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import SHARED, CifarResNet, checkpoint_path  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402

HYMENOPTERA = SHARED / "data" / "hymenoptera_data"


def image_folder(split: str):
    bunch = load_files(HYMENOPTERA / split, load_content=False, shuffle=False)
    return list(bunch.filenames), np.asarray(bunch.target_names)[bunch.target]


def strategies(epochs: int, depth: int) -> dict[str, dict]:
    pretrained = str(checkpoint_path(depth))
    half = epochs // 2
    return {
        "linear probe (freeze backbone)": dict(weights=pretrained, freeze="backbone", lr=1e-2),
        "two-stage (head, then all)": dict(weights=pretrained, freeze="backbone", lr=1e-2,
                                           unfreeze_at=half, unfreeze_lr=1e-3),
        "full fine-tune": dict(weights=pretrained, freeze="none", lr=1e-3),
        "random init, full training": dict(weights=None, freeze="none", lr=1e-3),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--depth", type=int, default=20, choices=(20, 56))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    X_train, y_train = image_folder("train")
    X_val, y_val = image_folder("val")
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    rows = []
    for name, params in strategies(args.epochs, args.depth).items():
        clf = PretrainedFineTuner(
            CifarResNet(args.depth), image_size=96, max_epochs=args.epochs, batch_size=32,
            validation_fraction=None, num_workers=args.workers, random_state=0, **params,
        )
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        rows.append((name, clf.score(X_val, y_val), seconds))
        print(f"done: {name}", file=sys.stderr)

    base_acc, base_time = rows[-1][1], rows[-1][2]
    print(f"\nResNet{args.depth} (CIFAR-10 checkpoint) -> ants vs bees, 96 px, {args.epochs} epochs, "
          f"train {len(X_train)} / val {len(X_val)}, torch threads {torch.get_num_threads()}\n")
    print("| strategy | val accuracy | vs random init | fit time (s) | time vs random init |")
    print("| --- | --- | --- | --- | --- |")
    for name, acc, seconds in rows:
        print(f"| {name} | {acc:.3f} | {acc / base_acc:.2f}x | {seconds:.1f} | "
              f"{seconds / base_time:.2f}x |")


if __name__ == "__main__":
    main()
