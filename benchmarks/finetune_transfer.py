"""Does transfer help? CIFAR-10 ResNet20 adapted to the ants-vs-bees photos, with skadapt's defaults.

Trains on the official ``train`` split (245 photos) and scores on ``val`` (153 photos) at 96 px:
sklearn's ``LogisticRegression`` on frozen features (the hand-written linear probe), skadapt's convex
linear probe (the default when the backbone stays frozen and inputs are not augmented), the head alone
with augmentation, a two-stage fine-tune, a full fine-tune, and the same network from random
initialization. Prints accuracy and wall time of each, with ratios against the random-init baseline run
in the same process.

A second table checks the internal-validation policy on the issue's case (head only, augmentation,
lr 3e-3, batch 32): ``max_epochs`` 8 and 30, with the default ``validation_fraction`` against ``None``
(all the data) and an explicit 0.1 split.

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
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import SHARED, CifarResNet, checkpoint_path  # noqa: E402
from skadapt import PretrainedFeatureExtractor, PretrainedFineTuner  # noqa: E402

HYMENOPTERA = SHARED / "data" / "hymenoptera_data"


def image_folder(split: str):
    bunch = load_files(HYMENOPTERA / split, load_content=False, shuffle=False)
    return list(bunch.filenames), np.asarray(bunch.target_names)[bunch.target]


def strategies(epochs: int, depth: int) -> dict[str, dict]:
    pretrained = str(checkpoint_path(depth))
    half = epochs // 2
    return {
        "convex linear probe (freeze backbone, no augmentation)": dict(
            weights=pretrained, freeze="backbone", augment=False),
        "head only, augmentation (freeze backbone)": dict(weights=pretrained, freeze="backbone",
                                                          lr=1e-2),
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
    parser.add_argument("--skip-validation-check", action="store_true")
    args = parser.parse_args(argv)
    X_train, y_train = image_folder("train")
    X_val, y_val = image_folder("val")
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    rows = []
    start = time.perf_counter()
    embedder = PretrainedFeatureExtractor(CifarResNet(args.depth), weights=str(checkpoint_path(
        args.depth)), image_size=96, num_workers=args.workers, feature_cache=False)
    probe = make_pipeline(embedder, LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    rows.append(("sklearn LogisticRegression on frozen features", probe.score(X_val, y_val),
                 time.perf_counter() - start))
    for name, params in strategies(args.epochs, args.depth).items():
        clf = PretrainedFineTuner(
            CifarResNet(args.depth), image_size=96, max_epochs=args.epochs, batch_size=32,
            num_workers=args.workers, random_state=0, **params,
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
    if not args.skip_validation_check:
        validation_check(args, X_train, y_train, X_val, y_val)


def validation_check(args, X_train, y_train, X_val, y_val) -> None:
    """The issue's case: head only at lr 3e-3, batch 32, 8 and 30 epochs, three validation settings."""
    settings = {"default ('auto')": "auto", "None (all the data)": None, "0.1 (explicit)": 0.1}
    print(f"\nInternal validation: ResNet{args.depth} head only with augmentation, lr 3e-3, batch 32\n")
    print("| validation_fraction | max_epochs | val accuracy | vs None | epochs run | best epoch | "
          "restored | policy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for epochs in (8, 30):
        scores = {}
        for label, fraction in settings.items():
            clf = PretrainedFineTuner(
                CifarResNet(args.depth), weights=str(checkpoint_path(args.depth)), image_size=96,
                freeze="backbone", lr=3e-3, batch_size=32, max_epochs=epochs,
                validation_fraction=fraction, num_workers=args.workers, random_state=0,
            ).fit(X_train, y_train)
            scores[label] = clf.score(X_val, y_val)
            summary = clf.validation_
            print(f"| {label} | {epochs} | {scores[label]:.3f} | "
                  f"{scores[label] - scores.get('None (all the data)', scores[label]):+.3f} | "
                  f"{summary['epochs_run']} | {summary['best_epoch']} | {summary['restored_best']} | "
                  f"{summary['policy']} |", flush=True)


if __name__ == "__main__":
    main()
