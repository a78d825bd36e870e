"""A vector index of documents for `bertkit index`, `bertkit search` and `serve`'s /search, on faiss.

The folder:

    index.faiss       the faiss index of the documents' L2-normalised vectors (inner product = cosine)
    documents.jsonl   {"id": ..., "text": ...} per document, in index order
    index.json        the model (its path and fingerprint), pooling, normalisation, dimension, kind, count, and
                      for HNSW its parameters and its recall@10 against the exact index

Choices:
- faiss (faiss-cpu): exact search (`IndexFlatIP`, brute force in BLAS) and approximate (`IndexHNSWFlat`, the
  graph index most vector databases use; M links per node, efConstruction, efSearch); one library with both,
  on PyPI for every platform, and the reference the others are measured against. Vectors are normalised, so
  scores are cosines for both kinds.
- An HNSW build measures itself: recall@10 of the graph against the exact answer, for up to 1,000 of the
  documents' own vectors as queries, kept in index.json and printed.
- The model's fingerprint is the SHA-256 of everything that makes its vectors (the weights of the encoder and
  of any Dense layer, the pooling, the normalisation, max_seq_length): a search with another model, or with
  the same model pooled differently, is refused, since its vectors live in another space.
- Built beside the target and renamed into place: a failure leaves an old index as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertkit.errors import BertkitError, CheckpointError
from bertkit.use.embed import Embedder

KINDS = ("flat", "hnsw")
META = "index.json"
RECALL_SAMPLE = 1000


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise BertkitError("vector indexes need faiss: pip install faiss-cpu") from None
    return faiss


def fingerprint(embedder: Embedder) -> str:
    """SHA-256 over what makes the embedder's vectors: weights (in their order), pooling, normalisation, length."""
    h = hashlib.sha256()
    settings = [embedder.pooling, embedder.normalize, embedder.max_seq_length, embedder.do_lower_case]
    h.update(json.dumps(settings).encode())
    modules = [embedder.encoder, *embedder.dense]
    for module in modules:
        for name, t in module.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class VectorIndex:
    index: object  # a faiss index
    ids: list[str]
    texts: list[str]
    meta: dict

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: list[str],
        texts: list[str],
        meta: dict,
        kind: str = "flat",
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
    ) -> VectorIndex:
        """An index of `vectors` (normalised here); `meta` (model, fingerprint, ...) is kept in index.json."""
        faiss = faiss_module()
        if kind not in KINDS:
            raise BertkitError(f"index kind {kind!r}: use one of {', '.join(KINDS)}")
        if len(set(ids)) != len(ids):
            twice = next(i for n, i in enumerate(ids) if i in ids[:n])
            raise BertkitError(f"document id {twice!r} appears twice; give each document its own id")
        vectors = normalised(vectors)
        dim = vectors.shape[1]
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        index.add(vectors)
        meta = {**meta, "kind": kind, "dim": dim, "count": len(ids)}
        if kind == "hnsw":
            meta |= {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
            meta["recall_at_10"] = hnsw_recall(index, vectors)
        return cls(index, list(ids), list(texts), meta)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), each (Q, min(k, count)), best first; the queries are normalised here."""
        queries = normalised(queries)
        if queries.shape[1] != self.meta["dim"]:
            raise BertkitError(f"query vectors have {queries.shape[1]} dimensions; the index holds {self.meta['dim']}")
        return self.index.search(queries, min(k, len(self.ids)))

    def search_texts(self, embedder: Embedder, queries: list[str], k: int = 10, precision: str = "fp32") -> list:
        """For each query, [{"id", "score", "text"}, ...] best first; refuses another model's embedder."""
        self.check_model(embedder)
        scores, found = self.search(embedder.encode(queries, precision=precision), k)
        return [
            [{"id": self.ids[j], "score": float(s), "text": self.texts[j]} for s, j in zip(row_s, row_j, strict=True)]
            for row_s, row_j in zip(scores.tolist(), found.tolist(), strict=True)
        ]

    def check_model(self, embedder: Embedder) -> None:
        if embedder.dim != self.meta["dim"]:
            raise BertkitError(
                f"the model gives {embedder.dim}-dimensional vectors; the index ({self.meta['model']}) holds "
                f"{self.meta['dim']}-dimensional ones: search with the model it was built with"
            )
        if fingerprint(embedder) != self.meta["fingerprint"]:
            raise BertkitError(
                f"the index was built with another model ({self.meta['model']}, {self.meta['pooling']} pooling): "
                "its vectors are not comparable with this one's; search with that model or rebuild the index"
            )

    def save(self, folder: str | os.PathLike) -> None:
        faiss = faiss_module()
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
            for i, t in zip(self.ids, self.texts, strict=True):
                f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
        (tmp / META).write_text(json.dumps(self.meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> VectorIndex:
        faiss = faiss_module()
        folder = Path(folder)
        meta_file = folder / META
        if not meta_file.is_file():
            raise CheckpointError(f"{folder}: not an index folder (no {META}); build one with `bertkit index`")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{meta_file}: cannot read it ({type(e).__name__}); rebuild the index") from None
        wanted = {"model": str, "fingerprint": str, "dim": int, "count": int, "kind": str, "pooling": str}
        for key, kind in wanted.items():
            if not isinstance(meta, dict) or not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
                raise CheckpointError(f"{meta_file}: '{key}' is missing or not a {kind.__name__}; rebuild the index")
        ids, texts = [], []
        documents = folder / "documents.jsonl"
        try:
            with open(documents, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    row = json.loads(line)
                    if (
                        not isinstance(row, dict)
                        or not isinstance(row.get("id"), str)
                        or not isinstance(row.get("text"), str)
                    ):
                        raise CheckpointError(
                            f'{documents}: line {n} is not {{"id": str, "text": str}}; rebuild the index'
                        )
                    ids.append(row["id"])
                    texts.append(row["text"])
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{documents}: cannot read it ({type(e).__name__}); rebuild the index") from None
        if meta["count"] != len(ids):
            raise CheckpointError(
                f"{folder}: {META} counts {meta['count']} documents, documents.jsonl holds {len(ids)}"
            )
        try:
            index = faiss.read_index(str(folder / "index.faiss"))
        except RuntimeError as e:
            raise CheckpointError(f"{folder}/index.faiss: not a faiss index ({str(e).splitlines()[0][:80]})") from None
        if index.ntotal != len(ids) or index.d != meta["dim"]:
            raise CheckpointError(
                f"{folder}: index.faiss holds {index.ntotal} vectors of {index.d} dimensions, {META} says "
                f"{len(ids)} of {meta['dim']}; rebuild the index"
            )
        if hasattr(index, "hnsw") and "ef_search" in meta:
            index.hnsw.efSearch = int(meta["ef_search"])
        return cls(index, ids, texts, meta)


def hnsw_recall(index, vectors: np.ndarray, k: int = 10) -> float:
    """Recall@k of the approximate index against the exact answer, for up to RECALL_SAMPLE of the vectors."""
    faiss = faiss_module()
    sample = vectors[np.linspace(0, len(vectors) - 1, min(RECALL_SAMPLE, len(vectors))).astype(int)]
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    k = min(k, len(vectors))
    _, truth = exact.search(sample, k)
    _, got = index.search(sample, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth.tolist(), got.tolist(), strict=True)]))


def build_index(
    embedder: Embedder,
    model: str,
    ids: list[str],
    texts: list[str],
    kind: str = "flat",
    precision: str = "fp32",
    batch_tokens: int = 4096,
    progress: bool = False,
    **hnsw,
) -> VectorIndex:
    vectors = embedder.encode(texts, precision=precision, batch_tokens=batch_tokens, progress=progress)
    meta = {"model": model, "fingerprint": fingerprint(embedder), "pooling": embedder.pooling}
    meta |= {"normalize": embedder.normalize, "max_seq_length": embedder.max_seq_length, "precision": precision}
    return VectorIndex.build(vectors, ids, texts, meta, kind, **hnsw)
