"""The classical baselines a practitioner tries first, on the same splits and metrics as fine-tuning.

A BERT that loses to these has not yet shown what the notes claim, so every accuracy figure of bertkit
stands beside them (`bertkit baseline`, `make demo`, scripts/finetune_table.sh).

- Classification and sentence pairs: character 1–3-gram TF-IDF (sublinear tf) + logistic regression
  (scikit-learn). Characters, not words: it needs no segmenter for Chinese and is what works best for short
  reviews. A pair's two texts get a vectoriser each, side by side. Regression: the same features + ridge.
- Tagging (NER in BIO, segmentation in BMES): a linear-chain CRF (CRFsuite through python-crfsuite, L-BFGS
  with L1 + L2) on character features: the character and its neighbours at ±1 and ±2, the bigrams around
  it, and a coarse character class (digit, Latin letter, punctuation, other), plus sentence start / end.

The regularisation strength is chosen on the dev split from a small grid; the test split is scored once,
with the chosen setting. Both libraries are deterministic for the same data (no random state involved in
lbfgs / L-BFGS), so the same command gives the same figures.
"""

from __future__ import annotations

import tempfile
import time
import unicodedata
from pathlib import Path

from bertkit.errors import BertkitError
from bertkit.finetune.metrics import accuracy, entity_scores, macro_f1, pearson, spearman, word_scores
from bertkit.finetune.predict import main_metric
from bertkit.finetune.tasks import TaskData

TEXT_C_GRID = (1.0, 3.0, 10.0, 30.0)  # logistic regression's inverse regularisation
RIDGE_ALPHA_GRID = (0.1, 1.0, 10.0)
CRF_C2_GRID = (0.01, 0.1)  # L2; L1 stays at CRF_C1
CRF_C1 = 0.1
CRF_MAX_ITERATIONS = 150


def run_baseline(task: TaskData) -> dict:
    """Fit on train, choose the setting on dev, score dev and test: {"method", "setting", "grid", "dev", "test"}."""
    if not task.train or not task.dev:
        raise BertkitError(f"task {task.name}: the baseline needs training and dev examples")
    start = time.perf_counter()
    if task.kind in ("classification", "regression"):
        result = _text_baseline(task)
    elif task.kind == "tagging":
        result = _crf_baseline(task)
    else:
        raise BertkitError(
            f"task {task.name}: no classical baseline for {task.kind} (classification, regression and tagging have one)"
        )
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["metric"] = main_metric(task.kind)
    return result


# ---- TF-IDF + a linear model ---------------------------------------------------------------------------------


def _text_baseline(task: TaskData) -> dict:
    import numpy as np
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    pairs = task.train[0].text_pair is not None
    # lowercase=False: case can carry meaning, and Chinese has none to fold
    vectorisers = [
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, lowercase=False, dtype=np.float32)
        for _ in range(2 if pairs else 1)
    ]

    def features(examples, fit=False):
        columns = [[ex.text for ex in examples]] + ([[ex.text_pair or "" for ex in examples]] if pairs else [])
        mats = [v.fit_transform(c) if fit else v.transform(c) for v, c in zip(vectorisers, columns, strict=True)]
        return hstack(mats).tocsr() if pairs else mats[0]

    x_train = features(task.train, fit=True)
    x = {"dev": features(task.dev), "test": features(task.test) if task.test else None}
    regression = task.kind == "regression"
    if regression:
        y_train = np.array([float(ex.label) for ex in task.train])
        grid, make = RIDGE_ALPHA_GRID, lambda a: Ridge(alpha=a)
    else:
        y_train = [ex.label for ex in task.train]
        grid, make = TEXT_C_GRID, lambda c: LogisticRegression(C=c, max_iter=2000)

    def scores(split, pred):
        gold = [ex.label for ex in getattr(task, split)]
        if regression:
            gold, pred = [float(g) for g in gold], [float(p) for p in pred]
            return {"pearson": pearson(gold, pred), "spearman": spearman(gold, pred), "examples": len(gold)}
        pred = list(pred)
        return {"accuracy": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred), "examples": len(gold)}

    metric = main_metric(task.kind)
    tried = []
    for value in grid:
        model = make(value).fit(x_train, y_train)
        tried.append((scores("dev", model.predict(x["dev"]))[metric], value, model))
    best = max(tried, key=lambda t: t[0])  # the first of equal scores: the strongest regularisation
    _, value, model = best
    name = "alpha" if regression else "C"
    test_pred = model.predict(x["test"]) if task.test else None  # once: scored, and kept for `bertkit compare`
    result = {
        "method": "character 1-3-gram TF-IDF + " + ("ridge regression" if regression else "logistic regression"),
        "setting": {name: value},
        "grid": {str(v): round(s, 4) for s, v, _ in tried},
        "dev": scores("dev", model.predict(x["dev"])),
        "test": scores("test", test_pred) if task.test else {},
        "features": int(x_train.shape[1]),
    }
    if task.test and not regression:  # (gold, predicted) for `bertkit compare`, paired with a fine-tuned run
        result["test_predictions"] = ([ex.label for ex in task.test], [str(p) for p in test_pred])
    return result


# ---- a linear-chain CRF on character features -------------------------------------------------------------------


def char_class(c: str) -> str:
    if c.isdigit() or unicodedata.category(c) == "Nd":
        return "digit"
    if c.isascii() and c.isalpha() or unicodedata.name(c, "").startswith("FULLWIDTH LATIN"):
        return "latin"
    if unicodedata.category(c).startswith(("P", "S")):
        return "punct"
    return "other"


def char_features(words: list[str]) -> list[list[str]]:
    """CRFsuite attributes for each position. Words are characters for the built-in Chinese tasks; a longer
    word (an English token) is treated the same way, as one unit."""
    n = len(words)

    def at(i: int) -> str:
        return words[i] if 0 <= i < n else ("<s>" if i < 0 else "</s>")

    out = []
    for i in range(n):
        f = [f"c0={at(i)}", f"c-1={at(i - 1)}", f"c+1={at(i + 1)}", f"c-2={at(i - 2)}", f"c+2={at(i + 2)}"]
        f += [f"c-1c0={at(i - 1)}{at(i)}", f"c0c+1={at(i)}{at(i + 1)}", f"c-1c+1={at(i - 1)}{at(i + 1)}"]
        f.append(f"class={char_class(words[i][0]) if words[i] else 'other'}")
        if i == 0:
            f.append("BOS")
        if i == n - 1:
            f.append("EOS")
        out.append(f)
    return out


def _crf_baseline(task: TaskData) -> dict:
    return fit_crf(task, char_features, "linear-chain CRF (CRFsuite, L-BFGS) on character n-gram features")


def fit_crf(task: TaskData, featurise, method: str) -> dict:
    """A linear-chain CRF on `featurise(words)`'s attributes per token (CRFsuite's strings or {name: value}), c2
    chosen on dev from CRF_C2_GRID, test scored once: the result as `run_baseline` gives it."""
    import pycrfsuite

    train = [(featurise(ex.words), ex.tags) for ex in task.train if ex.words]
    feats = {split: [featurise(ex.words) for ex in getattr(task, split)] for split in ("dev", "test")}

    def predicted(tagger, split):
        return [tagger.tag(f) if f else [] for f in feats[split]]

    def scores(split, pred):
        examples = getattr(task, split)
        gold = [ex.tags for ex in examples]
        result = {"tag_accuracy": accuracy([t for g in gold for t in g], [t for p in pred for t in p])}
        result |= entity_scores(gold, pred) if task.scheme == "bio" else word_scores(gold, pred)
        return result | {"examples": len(examples)}

    tried = []
    with tempfile.TemporaryDirectory(prefix="bertkit-crf-") as tmp:
        for c2 in CRF_C2_GRID:
            trainer = pycrfsuite.Trainer(verbose=False)
            for xseq, yseq in train:
                trainer.append(xseq, yseq)
            trainer.set_params({"c1": CRF_C1, "c2": c2, "max_iterations": CRF_MAX_ITERATIONS})
            path = str(Path(tmp) / f"crf-{c2}.model")
            trainer.train(path)
            tagger = pycrfsuite.Tagger()
            tagger.open(path)
            tried.append((scores("dev", predicted(tagger, "dev"))["f1"], c2, tagger))
        best_f1, c2, tagger = max(tried, key=lambda t: t[0])
        test_pred = predicted(tagger, "test") if task.test else None  # once: scored, and kept for `compare`
        result = {
            "method": method,
            "setting": {"c1": CRF_C1, "c2": c2, "max_iterations": CRF_MAX_ITERATIONS},
            "grid": {str(v): round(s, 4) for s, v, _ in tried},
            "dev": scores("dev", predicted(tagger, "dev")),
            "test": scores("test", test_pred) if task.test else {},
        }
        if task.test:  # (gold, predicted) for `bertkit compare`
            result["test_predictions"] = ([ex.tags for ex in task.test], test_pred)
        return result
