"""Peak memory of fitting on image paths, at 1x and 4x the dataset: bounded by batch and cache limits.

The 4x dataset is the 245 ants-vs-bees training photos under 4 distinct paths each (symbolic links
in a temporary folder: 980 distinct samples as far as every cache is concerned). Each case runs in
a fresh child process, which reports its peak resident memory (``ru_maxrss``) and how much the fit
added to what the process held before it (imports, the network, the list of paths):

- ``PretrainedFineTuner.fit``: a linear head on a frozen CIFAR-10 ResNet20, 1 epoch, 32 px, no
  workers: decoded images live one batch at a time;
- ``PretrainedFeatureExtractor.fit_transform`` with its embedding cache (64 floats per photo kept);
- ``DecodedImageDataset`` (``predecode`` then one augmented epoch), photos kept at a 128 px short
  side, with the cache bounded at ``--cache-mib`` and, for contrast, with a bound larger than the
  data (what an unbounded cache would hold).

    python benchmarks/bench_memory.py [--cache-mib 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import CifarResNet, checkpoint_path  # noqa: E402
from benchmarks.finetune_transfer import image_folder  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402
from skadapt.finetune._extractor import PretrainedFeatureExtractor  # noqa: E402
from skadapt.finetune._image_cache import (  # noqa: E402
    DecodedImageCache,
    DecodedImageDataset,
    make_decode_transform,
)
from skadapt.finetune._transforms import make_transform  # noqa: E402

SIZE = 32
SHORT_SIDE = 128
CASES = ("fine-tune", "extract", "decoded-bounded", "decoded-unbounded")


def linked_copies(paths: list[str], copies: int, folder: Path) -> list[str]:
    linked = []
    for copy in range(copies):
        for i, path in enumerate(paths):
            link = folder / f"c{copy}_{i}{Path(path).suffix}"
            link.symlink_to(path)
            linked.append(str(link))
    return linked


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(case: str, paths: list[str], y: np.ndarray, cache_mib: int) -> dict:
    before = current_rss_mib()
    extra = {}
    if case == "fine-tune":
        PretrainedFineTuner(CifarResNet(20), weights=str(checkpoint_path(20)), image_size=SIZE,
                            max_epochs=1, batch_size=32, validation_fraction=None,
                            random_state=0).fit(paths, y)
    elif case == "extract":
        PretrainedFeatureExtractor(CifarResNet(20), weights=str(checkpoint_path(20)),
                                   image_size=SIZE).fit_transform(paths)
    else:
        bound = cache_mib * 2**20 if case == "decoded-bounded" else 2**34
        cache = DecodedImageCache(max_bytes=bound)
        dataset = DecodedImageDataset(paths, y, decode=make_decode_transform(SHORT_SIDE),
                                      transform=make_transform("files", train=True,
                                                               image_size=SIZE), cache=cache)
        dataset.predecode()
        for _ in DataLoader(dataset, batch_size=32, shuffle=True):
            pass
        extra = {"cached_mib": cache.nbytes / 2**20, "cached_images": len(cache)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"peak_mib": peak, "added_mib": peak - before, **extra}


def child(case: str, copies: int, cache_mib: int, threads: int) -> None:
    torch.set_num_threads(threads)
    photos, labels = image_folder("train")
    y = np.tile((np.asarray(labels) == "bees").astype(np.int64), copies)
    with tempfile.TemporaryDirectory() as folder:
        paths = linked_copies(photos, copies, Path(folder))
        result = run_case(case, paths, y, cache_mib)
    print(json.dumps({"n": len(paths), **result}))


def label_of(case: str, cache_mib: int) -> str:
    return {
        "fine-tune": "PretrainedFineTuner.fit (1 epoch, frozen backbone)",
        "extract": "PretrainedFeatureExtractor.fit_transform (embedding cache)",
        "decoded-bounded": f"DecodedImageDataset, cache bound {cache_mib} MiB",
        "decoded-unbounded": "DecodedImageDataset, bound above the data (unbounded)",
    }[case]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-mib", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--copies", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.copies, args.cache_mib, args.threads)
        return

    rows = []
    for case in CASES:
        results = {}
        for copies in (1, 4):
            command = [sys.executable, __file__, "--child", case, "--copies", str(copies),
                       "--cache-mib", str(args.cache_mib), "--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[copies] = json.loads(output.strip().splitlines()[-1])
        rows.append((case, results[1], results[4]))
        print(f"done: {case}", file=sys.stderr)

    print(f"\nPeak resident memory of one fit on image paths, each in a fresh process: 1x = "
          f"{rows[0][1]['n']} photos, 4x = {rows[0][2]['n']} distinct paths; 'added' is the peak "
          f"minus the process's memory just before the fit. Torch threads {args.threads}.\n")
    print("| fit | peak 1x (MiB) | peak 4x (MiB) | added 1x (MiB) | added 4x (MiB) | added 4x / 1x | "
          "cache at the end, 1x / 4x |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case, one, four in rows:
        cached = (f"{one['cached_mib']:.1f} MiB ({one['cached_images']} images) / "
                  f"{four['cached_mib']:.1f} MiB ({four['cached_images']} images)"
                  if "cached_mib" in one else "-")
        ratio = four["added_mib"] / max(one["added_mib"], 1e-9)
        print(f"| {label_of(case, args.cache_mib)} | {one['peak_mib']:.0f} | {four['peak_mib']:.0f} "
              f"| {one['added_mib']:.0f} | {four['added_mib']:.0f} | {ratio:.2f}x | {cached} |")


if __name__ == "__main__":
    main()
