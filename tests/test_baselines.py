"""TF-IDF + linear SVM baselines on a small synthetic, separable corpus."""

import random

import pytest
from sklearn.exceptions import NotFittedError

from hdlm.evaluation.baselines import LeafSVMBaseline, PerLevelSVMBaseline
from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics

TOPICS = {
    "sports": ["match", "team", "season", "coach", "league"],
    "science": ["study", "theory", "experiment", "laboratory", "research"],
    "politics": ["vote", "party", "government", "minister", "policy"],
}
CHILDREN = {
    "sports": {
        "football": ["goal", "striker", "penalty", "midfield", "offside"],
        "tennis": ["serve", "racket", "deuce", "volley", "wimbledon"],
    },
    "science": {
        "physics": ["quantum", "particle", "gravity", "photon", "relativity"],
        "biology": ["cell", "gene", "protein", "enzyme", "organism"],
    },
    "politics": {
        "elections": ["ballot", "campaign", "candidate", "turnout", "poll"],
        "courts": ["judge", "verdict", "appeal", "lawsuit", "ruling"],
    },
}
TAXONOMY = [[topic, child] for topic, children in CHILDREN.items() for child in children]


def _corpus(documents_per_leaf: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    texts, paths = [], []
    for topic, child in TAXONOMY:
        for _ in range(documents_per_leaf):
            words = rng.sample(TOPICS[topic], 3) + rng.sample(CHILDREN[topic][child], 3)
            rng.shuffle(words)
            texts.append(" ".join(words))
            paths.append([topic, child])
    return texts, paths


@pytest.fixture(scope="module")
def corpus():
    return _corpus(8, seed=0), _corpus(3, seed=1)


def test_leaf_baseline_is_perfect_and_consistent(corpus):
    (train_texts, train_paths), (test_texts, test_paths) = corpus
    predictions = LeafSVMBaseline().fit(train_texts, train_paths).predict(test_texts)
    assert all(prediction in TAXONOMY for prediction in predictions)
    metrics = compute_hierarchical_metrics(predictions, test_paths, taxonomy=TAXONOMY)
    assert metrics["path_accuracy"] == 1.0
    assert metrics["inconsistency_rate"] == 0.0


def test_per_level_baseline_on_separable_data(corpus):
    (train_texts, train_paths), (test_texts, test_paths) = corpus
    predictions = PerLevelSVMBaseline().fit(train_texts, train_paths).predict(test_texts)
    metrics = compute_hierarchical_metrics(predictions, test_paths, taxonomy=TAXONOMY)
    assert 0.0 <= metrics["inconsistency_rate"] <= 1.0
    assert metrics["path_accuracy"] == 1.0


def test_independent_levels_disagree_and_the_metric_detects_it(corpus):
    (train_texts, train_paths), _ = corpus
    # Every sports topic word, and every physics word: the level-1 classifier follows the topic words, the level-2
    # classifier follows the leaf words.
    conflicting = [" ".join(TOPICS["sports"] + CHILDREN["science"]["physics"])] * 2
    references = [["science", "physics"]] * 2

    per_level = PerLevelSVMBaseline().fit(train_texts, train_paths).predict(conflicting)
    assert per_level[0] == ["sports", "physics"]
    metrics = compute_hierarchical_metrics(per_level, references, taxonomy=TAXONOMY)
    assert metrics["inconsistency_rate"] == 1.0
    # A label is its path: "physics" under "sports" is not the reference's "physics" under "science".
    assert metrics["level_2_accuracy"] == 0.0
    assert metrics["path_accuracy"] == 0.0

    leaf = LeafSVMBaseline().fit(train_texts, train_paths).predict(conflicting)
    assert compute_hierarchical_metrics(leaf, references, taxonomy=TAXONOMY)["inconsistency_rate"] == 0.0


def test_variable_depth_paths(corpus):
    (train_texts, train_paths), _ = corpus
    misc = ["weather forecast rain", "weather forecast sunny", "forecast rain wind", "weather wind sunny"]
    texts, paths = train_texts + misc, train_paths + [["misc"]] * len(misc)
    test_texts = ["weather rain forecast wind", "goal striker match team"]
    for baseline in (LeafSVMBaseline(), PerLevelSVMBaseline()):
        assert baseline.fit(texts, paths).predict(test_texts) == [["misc"], ["sports", "football"]]


def test_errors():
    with pytest.raises(NotFittedError, match="call `fit` first"):
        LeafSVMBaseline().predict(["text"])
    with pytest.raises(NotFittedError, match="call `fit` first"):
        PerLevelSVMBaseline().predict(["text"])
    with pytest.raises(ValueError, match=r"`texts` and `paths` differ in length: 1 != 2"):
        LeafSVMBaseline().fit(["a"], [["A"], ["B"]])
    with pytest.raises(ValueError, match=r"`paths\[0\]` is not a list of strings"):
        PerLevelSVMBaseline().fit(["a"], ["A"])
    with pytest.raises(ValueError, match=r"`texts\[1\]` is not a string"):
        LeafSVMBaseline().fit(["a", None], [["A"], ["B"]])
