import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import make_classification
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline

import skadapt
from skadapt.evaluation import evaluate
from skadapt.evaluation._html import number, table
from skadapt.evaluation._previews import as_image, as_text, preview_html

CV = StratifiedKFold(3, shuffle=True, random_state=0)


def test_numbers_are_formatted_for_reading():
    assert number(0.95312) == "0.953" and number(1.0) == "1.000"
    assert number(np.int64(12345)) == "12,345" and number(3.0, whole=True) == "3"
    assert number(0.0001234) == "0.000123" and number(float("nan")) == "n/a"
    assert number(True) == "yes"


def test_tables_have_one_header_row_and_right_aligned_numbers():
    frame = pd.DataFrame({"accuracy": [0.91234, 1.0], "support": [40.0, 38.0],
                          "note": ["<b>", "x"]},
                         index=pd.Index(["ants", "bees"], name="class"))
    html = table(frame)
    assert html.startswith("<div class='table-wrap'>")
    assert html.count("<tr>") == 3  # header + 2 rows: no row for the index's name
    assert "<th>class</th>" in html and "<td>ants</td>" in html
    assert "<td class='num'>0.912</td>" in html and "<td class='num'>1.000</td>" in html
    assert "<td class='num'>40</td>" in html  # a column of whole numbers stays whole
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_previews_of_arrays_files_texts_and_rows(tmp_path):
    channels_first = np.zeros((3, 8, 10))
    channels_first[0] = 1
    image = as_image(channels_first)
    assert image.size == (10, 8) and image.getpixel((0, 0)) == (255, 0, 0)
    assert as_image(np.random.default_rng(0).random((8, 10, 3))).size == (10, 8)
    assert as_image(np.arange(64.0).reshape(8, 8)).mode == "L"
    assert as_image(np.arange(5.0)) is None and as_image("just a sentence") is None
    path = tmp_path / "cat.png"
    Image.new("RGB", (300, 200), "blue").save(path)
    assert as_image(str(path)).size == (300, 200)
    thumb = preview_html([str(path)], 0)
    assert thumb.startswith("<img class='thumb'") and "base64," in thumb
    text = preview_html(["<script>alert(1)</script> " + "word " * 100], 0)
    assert "&lt;script&gt;" in text and "<script>" not in text and "…" in text
    assert as_text(pd.Series({"a": 0.123456, "b": "x"})) == "a=0.1235, b=x"


@pytest.fixture(scope="module")
def binary_texts():
    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "fine", "awful", "meh"])
    texts = [" ".join(rng.choice(words, 5)) for _ in range(60)]
    labels = np.array(["pos" if t.count("good") + t.count("fine") > 1 else "neg" for t in texts])
    model = make_pipeline(TfidfVectorizer(), LogisticRegression())
    return evaluate(model, texts, labels, cv=CV, data_name="60 <reviews>")


def test_report_page_header_sections_and_no_script(binary_texts):
    page = binary_texts._html()
    header = page.split("</header>")[0]
    assert "<dt>evaluated</dt><dd>Pipeline(TfidfVectorizer → LogisticRegression)" not in header
    assert "TfidfVectorizer → LogisticRegression" in header
    assert "60 &lt;reviews&gt;" in header and "3-fold cross-validation" in header
    assert f"<dd>{skadapt.__version__}</dd>" in header
    assert re.search(r"<dt>written</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d UTC</dd>", header)
    sections = re.findall(r"<section id='([^']+)'><h2>", page)
    assert sections == ["scores", "per-class", "confusions", "calibration",
                        "roc-and-precision-recall", "top-losses"]
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert page.count("<img") == 4  # per class, confusions, calibration, ROC/PR
    assert page.count("<span class='sample-text'>") == 12  # the top losses are texts
    assert "expected calibration error" in page


def test_regression_and_fine_tuner_pages(tmp_path, one_torch_thread):
    import torch
    from torch import nn

    from skadapt import PretrainedFineTuner

    X, y = make_classification(60, 4, n_informative=2, n_redundant=0, random_state=0)
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    tuner = PretrainedFineTuner(network, freeze="none", max_epochs=2, random_state=0)
    page = evaluate(tuner, X.astype(np.float32), y, cv=CV).save(tmp_path / "tuner").read_text()
    assert "<section id='training'>" in page and "alt='training curves'" in page
    assert "<dd>PretrainedFineTuner</dd>" in page and "60 samples (an array of shape (60, 4))" in page
