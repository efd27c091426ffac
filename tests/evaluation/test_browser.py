"""The HTML reports in a real browser: headless Chromium renders them at 1280 px.

Each page is loaded once by Chromium's command line (no Selenium, no Playwright), as a copy with
a probe script injected: ``--dump-dom`` hands back the probe's measurements (the page's scroll
width, every image's natural size), and ``--screenshot`` a picture of a tall window, cropped to the
page's height and saved as a test artifact (``$SKADAPT_TEST_ARTIFACTS/browser``, default
``tests/artifacts/browser``). The reports themselves carry no JavaScript.

The pages are those of small, fast evaluations in the demo's layout (``index.html`` comparing
three approaches, a report folder per approach), plus a binary text classifier and a regressor on
image files. Skips, with the reason, where Chromium is not installed (Debian:
``apt-get install -y chromium``).

Run as a script, it writes the README's screenshot: ``python tests/evaluation/test_browser.py``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from skadapt import PretrainedFineTuner
from skadapt.cli import _demo
from skadapt.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1280
TALL = 10000  # the window's height: pages longer than this are screenshotted in part
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PROBE = """<script>window.addEventListener('load', () => {
  const root = document.documentElement;
  const out = document.createElement('pre');
  out.id = 'skadapt-probe';
  out.style.display = 'none';
  out.textContent = JSON.stringify({
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
    height: Math.ceil(root.getBoundingClientRect().height),
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
                                             naturalWidth: i.naturalWidth,
                                             width: i.getBoundingClientRect().width})),
    tooWide: [...document.body.querySelectorAll('*')]
      .filter(e => e.getBoundingClientRect().right > root.clientWidth + 1
                   && !e.closest('.table-wrap'))
      .map(e => e.tagName + '.' + e.className).slice(0, 5)});
  document.body.appendChild(out);
});</script>"""


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, _NAMES) if path), None)


def _chromium_or_skip() -> str:
    browser = find_chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium): "
                    "the reports are not checked in a browser")
    try:
        subprocess.run([browser, "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"{browser} does not run here: {error}")
    return browser


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", "--mute-audio",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render(browser: str, page: Path, target: Path, profile: Path) -> dict:
    """Load a copy of ``page`` with the probe injected, in a window ``WIDTH`` wide and ``TALL``
    high; save the screenshot, cropped to the page's height, to ``target``; return the probe's
    measurements."""
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = _run(browser, profile, f"--window-size={WIDTH},{TALL}",
                      "--virtual-time-budget=5000", f"--screenshot={target}", "--dump-dom",
                      probed.as_uri())
    finally:
        probed.unlink()
    found = re.search(r"<pre id=\"skadapt-probe\"[^>]*>(.*?)</pre>", result.stdout, re.DOTALL)
    assert found, f"the probe did not run in {page.name}: {result.stderr[-2000:]}"
    probe = json.loads(html.unescape(found.group(1)))
    assert target.is_file(), f"no screenshot of {page}"
    with Image.open(target) as image:
        cropped = image.crop((0, 0, image.width, min(image.height, probe["height"])))
    cropped.save(target)
    return probe


def screenshot(browser: str, page: Path, height: int, target: Path, profile: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    height = max(600, min(height, 16000))
    _run(browser, profile, f"--window-size={WIDTH},{height}", f"--screenshot={target}",
         page.as_uri())
    assert target.is_file(), f"no screenshot of {page}"
    return target


def artifacts() -> Path:
    """``$SKADAPT_TEST_ARTIFACTS/browser``, else ``tests/artifacts/browser`` (kept out of git by
    a ``.gitignore`` of its own)."""
    base = os.environ.get("SKADAPT_TEST_ARTIFACTS")
    if base:
        return Path(base) / "browser"
    folder = ROOT / "tests" / "artifacts"
    folder.mkdir(exist_ok=True)
    if not (folder / ".gitignore").exists():
        (folder / ".gitignore").write_text("# test artifacts (screenshots): not part of the repository\n*\n")
    return folder / "browser"


# ----------------------------------------------------------------------------- the pages
def _digits_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 4))


def _mean_pixels(paths):
    return np.array([[np.asarray(Image.open(path), dtype=float).mean()] for path in paths])


def write_pages(out: Path) -> dict[str, Path]:
    """The demo's page layout from three fast approaches, and two more reports."""
    digits = load_digits(n_class=4)  # few classes and samples: small figures, fast to draw
    X = (digits.images[:160, None] / 16.0).astype(np.float32)
    y = digits.target[:160]
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tuner = PretrainedFineTuner(_digits_cnn(), freeze="backbone", unfreeze_at=2, max_epochs=4,
                                    lr=0.05, validation_fraction=0.2, patience=None,
                                    feature_cache=False, random_state=0)
        flat = FunctionTransformer(lambda images: images.reshape(len(images), -1))
        reports = {
            _demo.STAGED: evaluate(tuner, X, y, cv=cv),
            _demo.SCRATCH: evaluate(make_pipeline(flat, LogisticRegression(C=0.01)), X, y, cv=cv),
            _demo.PROBE: evaluate(make_pipeline(flat, LogisticRegression()), X, y, cv=cv),
        }
    finally:
        torch.set_num_threads(threads)
    _demo._write(out / "demo", _demo._results_table(reports), reports, _demo.QUICK, 0.1)

    words = ["great", "awful", "fine", "broken", "lovely", "late", "cheap", "solid"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 6)) + " " + "a very long word" * (i % 7 == 0) * 12
             for i in range(60)]
    labels = np.array(["positive" if sum(w in t for w in ("great", "fine", "lovely", "solid"))
                       > 2 else "negative" for t in texts])
    text_report = evaluate(make_pipeline(TfidfVectorizer(), LogisticRegression()), texts, labels,
                           cv=StratifiedKFold(3, shuffle=True, random_state=0))

    (out / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(24):
        pixels = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
        path = out / "images" / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    brightness = _mean_pixels(paths)[:, 0] + rng.normal(0, 5, 24)
    regression = evaluate(make_pipeline(FunctionTransformer(_mean_pixels), LinearRegression()),
                          paths, brightness, cv=KFold(3, shuffle=True, random_state=0))
    return {
        "demo-index": out / "demo" / "index.html",
        "demo-staged": out / "demo" / "staged-fine-tuning" / "report.html",
        "texts-binary": text_report.save(out / "texts"),
        "regression-image-files": regression.save(out / "regression"),
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    browser = _chromium_or_skip()
    out = tmp_path_factory.mktemp("browser")
    pages = write_pages(out)
    results = {}
    for name, page in pages.items():
        shot = artifacts() / f"{name}.png"
        results[name] = (page, render(browser, page, shot, out / "profile"), shot)
    return results


def test_nothing_overflows_the_page_width(rendered):
    for name, (_, probe, _) in rendered.items():
        assert probe["clientWidth"] == WIDTH, name
        assert probe["scrollWidth"] <= probe["clientWidth"], (name, probe["tooWide"])
        assert probe["tooWide"] == [], name


def test_every_image_loads_and_fits(rendered):
    for name, (_, probe, _) in rendered.items():
        assert probe["images"], f"{name} has no image"
        for image in probe["images"]:
            assert image["complete"] and image["naturalWidth"] > 0, (name, image["alt"])
            assert image["width"] <= WIDTH, (name, image["alt"])


def test_the_pages_show_what_the_issue_asks(rendered):
    alts = {name: [image["alt"] for image in probe["images"]]
            for name, (_, probe, _) in rendered.items()}
    assert alts["demo-index"] == ["comparison chart"]
    staged = alts["demo-staged"]
    for figure in ("training curves", "precision and recall per class", "confusion matrix",
                   "reliability diagram"):
        assert figure in staged
    assert sum(alt.startswith("sample ") for alt in staged) == 12  # top-loss thumbnails
    assert "ROC and precision-recall curves" in alts["texts-binary"]
    assert sum(alt.startswith("sample ") for alt in alts["regression-image-files"]) == 12
    page = rendered["texts-binary"][0].read_text()
    assert "<script" not in page and "http" not in page.split("</head>")[0]


def test_screenshots_are_saved_as_artifacts(rendered):
    for name, (_, _, shot) in rendered.items():
        with Image.open(shot) as image:
            assert image.width == WIDTH
            # not a blank page: the screenshot holds more than one colour
            assert len(image.convert("L").getcolors(maxcolors=256 * 256) or range(257)) > 8, name


if __name__ == "__main__":
    # The README's screenshot: the top of a report page (header, scores, training curves), by
    # default the staged approach's report of `skadapt demo --out skadapt-demo`, else the page
    # given as the first argument; the second is the height kept, in pixels of the 1280 px page.
    page = Path(sys.argv[1] if len(sys.argv) > 1 else "skadapt-demo/staged-fine-tuning/report.html")
    keep = int(sys.argv[2]) if len(sys.argv) > 2 else 2450
    browser = find_chromium()
    if browser is None or not page.is_file():
        sys.exit("needs chromium (apt-get install -y chromium) and a report: run skadapt demo")
    target = ROOT / "docs" / "images" / "report.png"
    with tempfile.TemporaryDirectory() as directory:
        shot = Path(directory) / "page.png"
        render(browser, page.resolve(), shot, Path(directory) / "profile")
        with Image.open(shot) as image:
            top = image.crop((0, 0, WIDTH, min(keep, image.height)))
            top = top.resize((WIDTH * 3 // 4, top.height * 3 // 4), Image.Resampling.LANCZOS)
            target.parent.mkdir(parents=True, exist_ok=True)
            top.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(target, optimize=True)
    print(f"wrote {target}")
