"""word2vec as features, the way static vectors were used before fine-tuning (seed 003's first stop on the road to
BERT): the lineage table's word2vec row, and `bertkit baseline --word2vec VECTORS`.

- Classification and pairs: the mean of the text's vectors (jieba words or characters, as the vectors were trained;
  units outside the vocabulary skipped, a text with none gets zeros), a pair's two means side by side, into
  logistic regression (ridge for regression), the regularisation chosen on dev from the TF-IDF baseline's grid.
- Tagging: a linear-chain CRF (CRFsuite, L-BFGS, as the character baseline) whose attributes are real-valued: the
  vector of each character and of its neighbours at ±1, plus sentence start and end; no character identities, so
  the CRF sees the text only through word2vec.
- The unit: characters when every word of the vocabulary is one character (`bertkit word2vec train --unit
  char`), else jieba words (the tagging tasks then look each character up, as a one-character word).

The result has the shape of `baselines.run_baseline`'s, so `bertkit baseline` writes and `bertkit compare` reads it
the same way.
"""

from __future__ import annotations

import time

import numpy as np

from bertkit.errors import BertkitError
from bertkit.finetune.baselines import RIDGE_ALPHA_GRID, TEXT_C_GRID, fit_crf
from bertkit.finetune.metrics import accuracy, macro_f1, pearson, spearman
from bertkit.finetune.predict import main_metric
from bertkit.finetune.tasks import TaskData
from bertkit.lineage.vectors import WordVectors


def unit_of(vectors: WordVectors) -> str:
    return "char" if all(len(w) == 1 for w in vectors.words) else "word"


def mean_vector(vectors: WordVectors, text: str, unit: str) -> np.ndarray:
    """The mean of the text's in-vocabulary units' vectors; zeros when it has none."""
    from bertkit.pretrain.masking import segment_words

    units = [c for c in text if not c.isspace()] if unit == "char" else segment_words(text)
    rows = [vectors.index[u] for u in units if u in vectors.index]
    if not rows:
        return np.zeros(vectors.vectors.shape[1], dtype=np.float32)
    return vectors.vectors[rows].mean(0)


def run_w2v_baseline(task: TaskData, vectors: WordVectors, source: str) -> dict:
    """Fit on train, choose the setting on dev, score dev and test once, as `run_baseline`."""
    if not task.train or not task.dev:
        raise BertkitError(f"task {task.name}: the baseline needs training and dev examples")
    start = time.perf_counter()
    if task.kind in ("classification", "regression"):
        result = _pooled(task, vectors, source)
    elif task.kind == "tagging":
        result = _crf(task, vectors, source)
    else:
        raise BertkitError(f"task {task.name}: word2vec features serve classification, regression and tagging")
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["metric"] = main_metric(task.kind)
    return result


def _pooled(task: TaskData, vectors: WordVectors, source: str) -> dict:
    from sklearn.linear_model import LogisticRegression, Ridge

    unit = unit_of(vectors)
    pairs = task.train[0].text_pair is not None

    def features(examples) -> np.ndarray:
        rows = []
        for ex in examples:
            parts = [mean_vector(vectors, ex.text, unit)]
            if pairs:
                parts.append(mean_vector(vectors, ex.text_pair or "", unit))
            rows.append(np.concatenate(parts))
        return np.stack(rows) if rows else np.zeros((0, vectors.vectors.shape[1] * (2 if pairs else 1)), np.float32)

    x = {split: features(getattr(task, split)) for split in ("train", "dev", "test")}
    regression = task.kind == "regression"
    if regression:
        y = np.array([float(ex.label) for ex in task.train])
        grid, make, name = RIDGE_ALPHA_GRID, (lambda a: Ridge(alpha=a)), "alpha"
    else:
        y = [ex.label for ex in task.train]
        grid, make, name = TEXT_C_GRID, (lambda c: LogisticRegression(C=c, max_iter=2000)), "C"

    def scores(split, pred):
        gold = [ex.label for ex in getattr(task, split)]
        if regression:
            gold, pred = [float(g) for g in gold], [float(p) for p in pred]
            return {"pearson": pearson(gold, pred), "spearman": spearman(gold, pred), "examples": len(gold)}
        pred = [str(p) for p in pred]
        return {"accuracy": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred), "examples": len(gold)}

    metric = main_metric(task.kind)
    tried = []
    for value in grid:
        model = make(value).fit(x["train"], y)
        tried.append((scores("dev", model.predict(x["dev"]))[metric], value, model))
    _, value, model = max(tried, key=lambda t: t[0])
    test_pred = model.predict(x["test"]) if task.test else None
    result = {
        "method": f"word2vec ({source}, {unit}s) mean-pooled + "
        + ("ridge regression" if regression else "logistic regression"),
        "setting": {name: value},
        "grid": {str(v): round(s, 4) for s, v, _ in tried},
        "dev": scores("dev", model.predict(x["dev"])),
        "test": scores("test", test_pred) if task.test else {},
        "features": int(x["train"].shape[1]),
    }
    if task.test and not regression:
        result["test_predictions"] = ([ex.label for ex in task.test], [str(p) for p in test_pred])
    return result


def token_attributes(vectors: WordVectors, words: list[str]) -> list[dict[str, float]]:
    """CRFsuite's real-valued attributes per token: its vector (v·), its neighbours' (p·, n·), start and end."""
    dim = vectors.vectors.shape[1]
    zero = np.zeros(dim, dtype=np.float32)
    rows = [vectors.vectors[vectors.index[w]] if w in vectors.index else zero for w in words]
    out = []
    for i, row in enumerate(rows):
        f = {"bias": 1.0}
        for prefix, v in (
            ("v", row),
            ("p", rows[i - 1] if i > 0 else zero),
            ("n", rows[i + 1] if i + 1 < len(rows) else zero),
        ):
            f.update({f"{prefix}{k}": float(x) for k, x in enumerate(v)})
        if i == 0:
            f["BOS"] = 1.0
        if i == len(rows) - 1:
            f["EOS"] = 1.0
        out.append(f)
    return out


def _crf(task: TaskData, vectors: WordVectors, source: str) -> dict:
    method = f"linear-chain CRF (CRFsuite, L-BFGS) on word2vec vectors ({source}): each character's and its neighbours'"
    return fit_crf(task, lambda words: token_attributes(vectors, words), method)
