"""Inference throughput: PretrainedFineTuner.predict_proba against a raw torch.inference_mode loop.

One fitted fine-tuner (CIFAR-10 ResNet20 checkpoint, 2-class head, 1 epoch on the ants-vs-bees
training photos) predicts class probabilities; the raw loop runs the very same module
(``clf.module_``) in ``eval()`` under ``torch.inference_mode()`` with a plain DataLoader and a
softmax, at the same batch size. Two inputs: 32x32 arrays (the photos decoded once and repeated to
``--n-arrays`` samples: no decoding, so only the estimator's overhead shows) and the 398 photo
paths of both splits (decoding included on both sides, same transform). Runs alternate, best of
``--repeats`` per side. Target: throughput ratio >= 0.95.

    python benchmarks/bench_predict.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_overhead import photos_as_arrays  # noqa: E402
from benchmarks.cifar_resnet import CifarResNet, checkpoint_path  # noqa: E402
from benchmarks.finetune_transfer import image_folder  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402
from skadapt.finetune._adapters import adapt_inputs  # noqa: E402
from skadapt.finetune._datasets import InputDataset  # noqa: E402
from skadapt.finetune._transforms import make_transform  # noqa: E402

BATCH_SIZE = 64


def raw_loop(module: torch.nn.Module, dataset, batch_size: int) -> np.ndarray:
    module.eval()
    outputs = []
    with torch.inference_mode():
        for xb, *_ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            outputs.append(torch.softmax(module(xb), dim=1).numpy())
    return np.concatenate(outputs)


def timed(run) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-arrays", type=int, default=980)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = 32
    X_small, y = photos_as_arrays(size)
    X_arrays = np.resize(X_small, (args.n_arrays, *X_small.shape[1:]))
    train_paths, _ = image_folder("train")
    val_paths, _ = image_folder("val")
    paths = train_paths + val_paths

    clf = PretrainedFineTuner(CifarResNet(20), weights=str(checkpoint_path(20)), image_size=size,
                              max_epochs=1, batch_size=BATCH_SIZE, validation_fraction=None,
                              random_state=0).fit(X_small, y)
    eval_transform = make_transform("files", train=False, image_size=size)
    cases = {
        f"{len(X_arrays)} arrays {size}x{size}": (
            lambda: clf.predict_proba(X_arrays),
            lambda: raw_loop(clf.module_, TensorDataset(torch.from_numpy(X_arrays)), BATCH_SIZE)),
        f"{len(paths)} image paths": (
            lambda: clf.predict_proba(paths),
            lambda: raw_loop(clf.module_, InputDataset(adapt_inputs(paths), transform=eval_transform),
                             BATCH_SIZE)),
    }
    rows = []
    for label, (ours, raw) in cases.items():
        ours_s = raw_s = float("inf")
        for _ in range(args.repeats):  # alternate, so that load changes hit both sides
            seconds, ours_out = timed(ours)
            ours_s = min(ours_s, seconds)
            seconds, raw_out = timed(raw)
            raw_s = min(raw_s, seconds)
        np.testing.assert_allclose(ours_out, raw_out, rtol=1e-4, atol=1e-6)
        n = len(ours_out)
        rows.append((label, n / ours_s, n / raw_s))
        print(f"done: {label}", file=sys.stderr)

    print(f"\npredict_proba, ResNet20 (CIFAR-10 checkpoint, fitted head), batch {BATCH_SIZE}, best of "
          f"{args.repeats} alternating runs, torch threads {torch.get_num_threads()}; both sides "
          "give the same probabilities\n")
    print("| input | predict_proba (samples/s) | raw inference_mode loop (samples/s) | ratio |")
    print("| --- | --- | --- | --- |")
    for label, ours, raw in rows:
        print(f"| {label} | {ours:.0f} | {raw:.0f} | {ours / raw:.3f}x |")


if __name__ == "__main__":
    main()
