"""Commands of retrieval: `embed-train` (a sentence-embedding model), `retrieval data` (the built-in benchmark as
files), `retrieval eval` (a model, BM25 or both fused, scored per query), `index` and `search` (a faiss index)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

from bertkit.cli.table import COUNT, NON_NEGATIVE, SEED, Range, command
from bertkit.errors import BertkitError


@command("embed-train")
def embed_train_cmd(
    *,
    model: Annotated[
        str, "the folder to start from: any folder `bertkit embed` reads (plain BERT or sentence-transformers)"
    ],
    train: Annotated[
        str, "training file: JSONL/CSV pairs (in-batch), one text per line (simcse), scored pairs (cosent)"
    ],
    out: Annotated[str, "run folder: model/ (a sentence-transformers folder), metrics.jsonl, curves.png, summary.json"],
    loss: Annotated[
        Literal["in-batch", "simcse", "cosent"],
        "in-batch: query/positive(/negatives) pairs, the batch's other documents as negatives; simcse: unsupervised, "
        "dropout as the positive; cosent: scored pairs, only the order of the scores",
    ] = "in-batch",
    dev: Annotated[
        str | None,
        "scored after each epoch: a BEIR folder or a pairs file (nDCG@10 ...), or scored pairs (Spearman)",
    ] = None,
    epochs: Annotated[int, "passes over the training data", Range(1, 10_000)] = 1,
    max_train_examples: Annotated[int | None, "train on the first N examples of the file only", COUNT] = None,
    batch_size: Annotated[int, "examples per step (every other document in it is a negative)", Range(2, 1 << 20)] = 64,
    cache_chunk: Annotated[
        int, "GradCache: embed at most this many texts at a time (0: the whole batch at once)", NON_NEGATIVE
    ] = 0,
    lr: Annotated[float, "peak learning rate (AdamW, warm-up then linear decay)", Range(0, 1, low_open=True)] = 5e-5,
    warmup: Annotated[float, "warm-up: a fraction of all steps (<1) or a number of steps", NON_NEGATIVE] = 0.1,
    scale: Annotated[
        float, "cosine similarities times this (20: a temperature of 0.05)", Range(0, 1000, low_open=True)
    ] = 20.0,
    symmetric: Annotated[bool, "in-batch / simcse: also each positive picking its query"] = False,
    negatives_per_query: Annotated[int, "in-batch: hard negatives taken from each row's `negatives`", NON_NEGATIVE] = 1,
    pooling: Annotated[
        Literal["cls", "mean", "max", "mean_sqrt_len"] | None, "pooling (default: the folder's, mean for plain BERT)"
    ] = None,
    normalize: Annotated[
        bool | None, "L2-normalise the vectors (default: the folder's; saved as a Normalize module)"
    ] = None,
    max_seq_length: Annotated[
        int | None, "tokens per text, [CLS] and [SEP] included (default: the folder's)", Range(3)
    ] = None,
    query_field: Annotated[str, "pairs: the query's field or column"] = "query",
    positive_field: Annotated[str, "pairs: the positive's field or column"] = "positive",
    negatives_field: Annotated[str, "pairs (JSONL): the field holding a list of hard negatives"] = "negatives",
    text_a: Annotated[str, "scored pairs: the first text's column"] = "sentence1",
    text_b: Annotated[str, "scored pairs: the second text's column"] = "sentence2",
    score_column: Annotated[str, "scored pairs: the score's column"] = "score",
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 autocast where the CPU has it"] = "auto",
    seed: Annotated[int, "random seed (batches, dropout)", SEED] = 0,
    save_every: Annotated[int, "checkpoint every N steps", COUNT] = 200,
    resume: Annotated[bool, "continue the run in --out from its newest checkpoint"] = False,
    progress: Annotated[bool | None, "progress bar on stderr (default: when stderr is a terminal)"] = None,
) -> None:
    """Train a sentence-embedding model (in-batch negatives with optional hard negatives, GradCache for large
    batches, unsupervised SimCSE, or CoSENT); the result is a sentence-transformers folder that `embed`, `serve`,
    `index` and SentenceTransformer(folder) read."""
    from bertkit.retrieval.train import EmbedTrainConfig, train_embeddings

    cfg = EmbedTrainConfig(
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        scale=scale,
        symmetric=symmetric,
        negatives_per_query=negatives_per_query,
        cache_chunk=cache_chunk,
        max_seq_length=max_seq_length,
        pooling=pooling,
        normalize=normalize,
        precision=precision,
        seed=seed,
        save_every=save_every,
        max_examples=max_train_examples,
    )
    if symmetric and loss == "cosent":
        raise BertkitError("--symmetric is for --loss in-batch and simcse; CoSENT compares pairs, not a batch")
    columns = {"query": query_field, "positive": positive_field, "negatives": negatives_field}
    columns |= {"a": text_a, "b": text_b, "score": score_column}
    dev_data = read_dev(dev, columns) if dev else None
    shown = sys.stderr.isatty() if progress is None else progress
    summary = train_embeddings(model, train, out, cfg, dev=dev_data, columns=columns, resume=resume, progress=shown)
    scores = summary["dev"]
    dev_line = "" if not scores else "; dev " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "step")
    print(f"{summary['steps']} steps on {summary['examples']} examples{dev_line}; model: {out}/model")


def read_dev(path: str, columns: dict):
    """A BEIR folder (its dev split, else test), a pairs file (as a retrieval set: the positives are the corpus),
    or a scored-pairs file."""
    from bertkit.finetune.readers import read_rows
    from bertkit.retrieval.benchmark import RetrievalSet, read_beir
    from bertkit.retrieval.data import read_pairs, read_scored_pairs

    p = Path(path)
    if p.is_dir():
        split = "dev" if (p / "qrels" / "dev.tsv").is_file() else "test"
        return read_beir(p, split)
    first = next(iter(read_rows(p)))[1]
    if columns["query"] in first:
        pairs = read_pairs(p, columns["query"], columns["positive"], columns["negatives"])
        corpus, queries, qrels = {}, {}, {}
        for i, pair in enumerate(pairs):
            for text in [pair.positive, *pair.negatives]:
                corpus.setdefault(text, f"d{len(corpus)}")
            queries[f"q{i}"] = pair.query
            qrels[f"q{i}"] = {corpus[pair.positive]: 1}
        return RetrievalSet({d: t for t, d in corpus.items()}, queries, qrels)
    return read_scored_pairs(p, columns["a"], columns["b"], columns["score"])


@command("retrieval data")
def retrieval_data_cmd(
    *,
    out: Annotated[str, "folder: train.jsonl (query/positive pairs), dev/ and test/ (BEIR folders)"],
    seed: Annotated[int, "the article split's seed (the default is the built-in tasks' fixed split)", SEED] = 1998,
) -> None:
    """Write the built-in retrieval benchmark (People's Daily: a headline finds its article's paragraphs) as files."""
    from bertkit.config import atomic_write_text
    from bertkit.retrieval.benchmark import peoples_daily_retrieval, write_beir

    target = Path(out)
    if target.exists() and not target.is_dir():
        raise BertkitError(f"--out {out} is a file; give a folder")
    if any((target / name).exists() for name in ("train.jsonl", "dev", "test")):
        raise BertkitError(f"--out {out} already holds retrieval data (train.jsonl, dev/, test/); choose another --out")
    pairs, dev, test = peoples_daily_retrieval(seed)
    target.mkdir(parents=True, exist_ok=True)
    write_beir(target / "dev", dev, split="dev")
    write_beir(target / "test", test, split="test")
    lines = (json.dumps({"query": q, "positive": p}, ensure_ascii=False) + "\n" for q, p in pairs)
    atomic_write_text(target / "train.jsonl", "".join(lines))
    print(
        f"{out}/train.jsonl: {len(pairs):,} (headline, paragraph) pairs; dev: {len(dev.queries)} queries over "
        f"{len(dev.corpus):,} paragraphs; test: {len(test.queries)} queries over {len(test.corpus):,} paragraphs"
    )


@command("retrieval eval")
def retrieval_eval_cmd(
    *,
    data: Annotated[str, "a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), e.g. `retrieval data`'s test/"],
    out: Annotated[str, "run folder: query_scores.jsonl (per query, for `bertkit compare`), summary.json"],
    model: Annotated[str | None, "dense retrieval with this model's vectors (cosine)"] = None,
    bm25: Annotated[Literal["chars", "words"] | None, "BM25 over characters or jieba words"] = None,
    split: Annotated[str, "the qrels file to score: qrels/SPLIT.tsv"] = "test",
    precision: Annotated[Literal["fp32", "bf16", "int8"], "the model's precision (as `embed`)"] = "fp32",
    rrf_k: Annotated[int, "hybrid (--model and --bm25): reciprocal-rank fusion's k", COUNT] = 60,
    overwrite: Annotated[bool, "replace a run already in --out"] = False,
) -> None:
    """Score retrieval on a BEIR folder: dense (--model), BM25 (--bm25), or both fused by reciprocal rank
    (hybrid); recall@1/10/100, MRR@10 and nDCG@10 per query and their means."""
    from bertkit.config import atomic_write_text
    from bertkit.retrieval.benchmark import read_beir
    from bertkit.retrieval.metrics import mean_metrics
    from bertkit.retrieval.search import bm25_rankings, dense_rankings, hybrid_rankings, score_rankings
    from bertkit.use.embed import load_embedder

    if model is None and bm25 is None:
        raise BertkitError("give --model (dense), --bm25 (BM25), or both (hybrid)")
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise BertkitError(f"--out {out} is a file; give a folder")
    if (target / "query_scores.jsonl").exists() and not overwrite:
        raise BertkitError(f"--out {out} already holds a retrieval run; pass --overwrite or choose another --out")
    retrieval_set = read_beir(data, split)
    embedder = load_embedder(model) if model else None
    systems, timings = [], {}
    if embedder is not None:
        rankings, timings["dense"] = dense_rankings(embedder, retrieval_set, precision=precision)
        systems.append(rankings)
    if bm25 is not None:
        rankings, timings[f"bm25-{bm25}"] = bm25_rankings(retrieval_set, bm25)
        systems.append(rankings)
    final = systems[0] if len(systems) == 1 else hybrid_rankings(*systems, k=rrf_k)
    name = "hybrid" if len(systems) > 1 else "dense" if embedder is not None else f"bm25-{bm25}"
    per_query = score_rankings(final, retrieval_set)
    means = mean_metrics(per_query)
    rows = (
        json.dumps({"query": q, **per_query[q], "top10": final[q][:10]}, ensure_ascii=False) + "\n"
        for q in retrieval_set.queries
    )
    summary = {"system": name, "data": data, "split": split, "model": model, "bm25": bm25, "queries": len(per_query)}
    summary |= {"documents": len(retrieval_set.corpus), "metrics": means, "timings": timings}
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / "query_scores.jsonl", "".join(rows))
    atomic_write_text(target / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"{name}: {len(per_query)} queries over {len(retrieval_set.corpus):,} documents")
    print("  ".join(f"{m} {v:.4f}" for m, v in means.items()))


def read_documents(path: str, id_field: str, text_field: str, title_field: str | None) -> tuple[list[str], list[str]]:
    """(ids, texts) of a text file (one document a line, its line number the id) or a JSONL file (named fields;
    a title, when given, goes before the text as BEIR's dense evaluation does)."""
    from bertkit.errors import DataError
    from bertkit.finetune.readers import _field, read_rows
    from bertkit.use.vector_io import read_lines

    if Path(path).suffix.lower() not in (".jsonl", ".json"):
        lines = list(read_lines(path))
        return [str(n) for n, _ in lines], [t for _, t in lines]
    ids, texts = [], []
    for line, row in read_rows(path):
        value = row.get(id_field)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{path}: line {line}: field '{id_field}' (the document's id) is missing or empty")
        title = row.get(title_field) if title_field else None
        text = _field(Path(path), line, row, text_field)
        ids.append(value)
        texts.append(f"{title} {text}" if isinstance(title, str) and title.strip() else text)
    return ids, texts


@command("index")
def index_cmd(
    model: Annotated[str, "the embedding model: a sentence-transformers or BERT folder"],
    *,
    input: Annotated[str, "documents: a text file (one a line; the line number is the id) or JSONL"],
    out: Annotated[str, "index folder: index.faiss, documents.jsonl, index.json"],
    kind: Annotated[
        Literal["flat", "hnsw"], "flat: exact search; hnsw: approximate (faiss HNSW), its recall measured"
    ] = "flat",
    id_field: Annotated[str, "JSONL: the id's field (BEIR's corpus.jsonl: _id)"] = "id",
    text_field: Annotated[str, "JSONL: the text's field"] = "text",
    title_field: Annotated[str | None, "JSONL: a title field to put before the text (BEIR: title)"] = None,
    m: Annotated[int, "hnsw: links per node", Range(2, 512)] = 32,
    ef_construction: Annotated[int, "hnsw: candidates kept while building", COUNT] = 200,
    ef_search: Annotated[int, "hnsw: candidates kept while searching (more: higher recall, slower)", COUNT] = 128,
    precision: Annotated[
        Literal["fp32", "bf16", "int8"], "the model's precision while embedding (as `embed`)"
    ] = "fp32",
    batch_tokens: Annotated[int, "padded tokens per batch (as `embed`)", Range(1, 1 << 24)] = 4096,
    overwrite: Annotated[bool, "replace an index already in --out"] = False,
    progress: Annotated[bool | None, "progress bar on stderr (default: when stderr is a terminal)"] = None,
) -> None:
    """Embed documents and build a vector index (faiss) that `bertkit search` and `bertkit serve --index` read."""
    import time

    from bertkit.use.embed import load_embedder
    from bertkit.use.index import META, build_index

    target = Path(out)
    if target.exists() and not target.is_dir():
        raise BertkitError(f"--out {out} is a file; give a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        what = "an index" if (target / META).exists() else "files"
        raise BertkitError(f"--out {out} already holds {what}; pass --overwrite or choose another --out")
    ids, texts = read_documents(input, id_field, text_field, title_field)
    embedder = load_embedder(model)
    start = time.perf_counter()
    shown = sys.stderr.isatty() if progress is None else progress
    hnsw = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search} if kind == "hnsw" else {}
    index = build_index(embedder, model, ids, texts, kind, precision, batch_tokens, shown, **hnsw)
    index.save(target)
    recall = f"; recall@10 against exact search {index.meta['recall_at_10']:.4f}" if kind == "hnsw" else ""
    seconds = time.perf_counter() - start
    print(f"{len(ids):,} documents, {index.meta['dim']} dimensions, {kind} index in {seconds:.1f} s{recall}: {out}")


@command("search")
def search_cmd(
    index: Annotated[str, "an index folder (`bertkit index`)"],
    *,
    query: Annotated[list[str] | None, "one or more query texts (or --input)"] = None,
    model: Annotated[str | None, "the model to embed queries with (default: the one the index was built with)"] = None,
    input: Annotated[str | None, "a text file of queries, one a line"] = None,
    output: Annotated[
        str | None, "write JSONL results here ({query, results: [{id, score, text}]}) instead of printing"
    ] = None,
    top_k: Annotated[int, "results per query", Range(1, 10_000)] = 10,
    precision: Annotated[Literal["fp32", "bf16", "int8"], "the model's precision (as `embed`)"] = "fp32",
) -> None:
    """Search an index with text queries: the top-k documents by cosine, with their ids, scores and texts."""
    from bertkit.config import atomic_write_text
    from bertkit.use.embed import load_embedder
    from bertkit.use.index import VectorIndex
    from bertkit.use.vector_io import check_output_file, read_lines

    if bool(query) == bool(input):
        raise BertkitError("give --query TEXT ... or --input FILE (one query a line), one of the two")
    if output is not None:
        check_output_file(output)
    texts = list(query) if query else [t for _, t in read_lines(input)]
    for i, q in enumerate(texts):
        if not q.strip():
            raise BertkitError(f"query {i + 1} is empty; give text to search for")
    found_index = VectorIndex.load(index)
    embedder = load_embedder(model or found_index.meta["model"])
    results = found_index.search_texts(embedder, texts, top_k, precision)
    if output is not None:
        rows = (
            json.dumps({"query": q, "results": r}, ensure_ascii=False) + "\n"
            for q, r in zip(texts, results, strict=True)
        )
        atomic_write_text(Path(output), "".join(rows))
        print(f"{len(texts)} queries, top {top_k}: {output}")
        return
    for q, hits in zip(texts, results, strict=True):
        print(q)
        for rank, hit in enumerate(hits, 1):
            text = hit["text"] if len(hit["text"]) <= 60 else hit["text"][:59] + "…"
            print(f"  {rank:>3}. {hit['score']:.4f}  {hit['id']}  {text}")


@command("mine-negatives")
def mine_negatives_cmd(
    model: Annotated[str, "the model whose index finds the negatives (usually the one you start training from)"],
    *,
    input: Annotated[str, "pairs: JSONL/CSV with query and positive (as embed-train reads them)"],
    output: Annotated[str, "the same pairs with a `negatives` list each, as JSONL"],
    corpus: Annotated[
        str | None, "documents to mine from: a text file or JSONL (default: the pairs' positives)"
    ] = None,
    ranks: Annotated[
        str, "the window of ranks LOW:HIGH the negatives come from (the top hits are often positives)"
    ] = "10:50",
    count: Annotated[int, "negatives per query", Range(1, 1000)] = 1,
    sampling: Annotated[Literal["random", "top"], "draw from the window at random, or take its top"] = "random",
    seed: Annotated[int, "random seed of the draws", SEED] = 0,
    query_field: Annotated[str, "the query's field or column"] = "query",
    positive_field: Annotated[str, "the positive's field or column"] = "positive",
    text_field: Annotated[str, "--corpus JSONL: the text's field"] = "text",
    precision: Annotated[Literal["fp32", "bf16", "int8"], "the model's precision (as `embed`)"] = "fp32",
) -> None:
    """Hard negatives for each query from the model's own ranking of the corpus, its positives left out, from a
    window of ranks; the output is embed-train's pairs file with `negatives` filled in."""
    from bertkit.config import atomic_write_text
    from bertkit.retrieval.data import read_pairs
    from bertkit.retrieval.mining import mine_negatives
    from bertkit.use.embed import load_embedder
    from bertkit.use.vector_io import check_output_file

    low, _, high = ranks.partition(":")
    if not (low.isdigit() and high.isdigit()):
        raise BertkitError(f"--ranks {ranks!r}: give LOW:HIGH, e.g. 10:50")
    check_output_file(output)
    pairs = read_pairs(input, query_field, positive_field, "negatives")
    docs = None
    if corpus is not None:
        docs = read_documents(corpus, "id", text_field, None)[1]
    mined, counts = mine_negatives(
        load_embedder(model), pairs, docs, int(low), int(high), count, sampling, seed, precision, sys.stderr.isatty()
    )
    rows = (
        json.dumps({"query": p.query, "positive": p.positive, "negatives": p.negatives}, ensure_ascii=False) + "\n"
        for p in mined
    )
    atomic_write_text(Path(output), "".join(rows))
    short = f"; {counts['short']} queries got fewer (a small corpus)" if counts["short"] else ""
    print(
        f"{len(mined):,} pairs ({counts['queries']:,} queries), {count} negative(s) each from ranks {ranks} of "
        f"{counts['documents']:,} documents{short}: {output}"
    )


def retrieval_runs(path: str) -> list[Path]:
    """The query_scores.jsonl files of a retrieval run: the file itself, or every one under a folder, sorted."""
    from bertkit.retrieval.metrics import SCORES_FILE

    p = Path(path)
    if p.is_file():
        return [p] if p.name == SCORES_FILE else []
    return sorted(p.rglob(SCORES_FILE)) if p.is_dir() else []


def compare_retrieval(a: str, b: str, resamples: int, metric: str) -> None:
    """`bertkit compare` for two retrieval runs: A's runs (and their mean) against B on one metric, paired by query."""
    from bertkit.retrieval.metrics import METRICS, paired_query_comparison, read_query_scores

    if metric not in METRICS:
        raise BertkitError(f"--metric {metric}: use one of {', '.join(METRICS)}")
    files_a, (file_b, *more) = retrieval_runs(a), retrieval_runs(b)
    if more:
        raise BertkitError(f"b: {b} holds {1 + len(more)} retrieval runs; give B as one run")
    if not files_a:
        raise BertkitError(
            f"a: no query_scores.jsonl under {a}; B is a retrieval run, so give A as one (`retrieval eval`)"
        )
    scores_b = {q: m[metric] for q, m in read_query_scores(file_b).items()}
    runs = []
    for path in files_a:
        scores = {q: m[metric] for q, m in read_query_scores(path).items()}
        if set(scores) != set(scores_b):
            raise BertkitError(f"{path} and {file_b} were not scored on the same queries; compare runs of one data set")
        runs.append(scores)
    print(f"B: {file_b} ({len(scores_b)} queries; {metric}, the mean over queries)")
    print(f"{'run of A':44s} {'A':>7s} {'B':>7s} {'A - B':>7s} {'95% interval':>17s}")
    rows = [
        (str(p.parent.relative_to(a)) if Path(a).is_dir() else str(p), [r]) for p, r in zip(files_a, runs, strict=True)
    ]
    if len(runs) > 1:
        rows.append((f"mean of the {len(runs)} runs above", runs))
    for name, group in rows:
        r = paired_query_comparison(group, scores_b, resamples)
        low, high = r["ci95"]
        shown = (a if name == "." else name)[-44:]
        print(
            f"{shown:44s} {r['score_a']:7.4f} {r['score_b']:7.4f} {r['difference']:+7.4f} [{low:+7.4f}, {high:+7.4f}]"
        )
    print("an interval that holds 0 means these queries cannot tell the two apart")
