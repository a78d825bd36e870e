"""Commands of the road to BERT: `word2vec train`, `word2vec neighbours`, `word2vec analogy`."""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from bertkit.cli.table import COUNT, FRACTION, SEED, Range, command
from bertkit.errors import BertkitError


@command("word2vec train")
def word2vec_train_cmd(
    *,
    out: Annotated[str, "run folder: vectors.txt / vectors.bin, vocab.txt, metrics.jsonl, curves.png, checkpoints/"],
    corpus: Annotated[list[str], "'peoples-daily' / 'reviews' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    unit: Annotated[Literal["char", "word"], "train on characters or on jieba words"] = "word",
    mode: Annotated[
        Literal["skipgram", "cbow"], "predict the neighbours from a word, or a word from them"
    ] = "skipgram",
    dim: Annotated[int, "vector size", Range(1, 4096)] = 100,
    window: Annotated[int, "the most words on each side (each centre draws its own window in 1..W)", COUNT] = 5,
    negative: Annotated[int, "noise words per positive (negative sampling)", Range(1, 100)] = 5,
    min_count: Annotated[int, "keep words seen at least this often", COUNT] = 5,
    sample: Annotated[float, "subsampling threshold t for frequent words (0: none)", FRACTION] = 1e-3,
    alpha: Annotated[
        float | None, "starting learning rate (default 0.025 skip-gram, 0.05 CBOW)", Range(0, 10, low_open=True)
    ] = None,
    epochs: Annotated[int, "passes over the corpus", Range(1, 1000)] = 5,
    engine: Annotated[
        Literal["auto", "gensim", "torch"],
        "gensim: its C loop (fastest; auto when installed); torch: bertkit's own mini-batch updates",
    ] = "auto",
    threads: Annotated[int, "CPU threads (gensim: worker threads; 1 gives the same bits every run)", COUNT] = 2,
    batch: Annotated[int, "torch engine: examples per update", Range(1, 1 << 20)] = 2048,
    seed: Annotated[int, "random seed", SEED] = 1,
    save_every: Annotated[int, "checkpoint every N chunks of 100,000 words", COUNT] = 10,
    resume: Annotated[bool, "continue the run in --out from its newest checkpoint"] = False,
    progress: Annotated[bool | None, "progress bar on stderr (default: when stderr is a terminal)"] = None,
) -> None:
    """Train word2vec (skip-gram or CBOW with negative sampling, subsampling and the unigram^0.75 noise table, as
    the paper and the C tool) on characters or jieba words of any corpus; vectors in the word2vec text and binary
    formats that gensim reads."""
    from bertkit.lineage.w2v_run import train_word2vec
    from bertkit.lineage.word2vec import Word2VecSettings

    settings = Word2VecSettings(
        mode=mode,
        dim=dim,
        window=window,
        negative=negative,
        min_count=min_count,
        sample=sample,
        alpha=alpha,
        epochs=epochs,
        batch=batch,
        seed=seed,
    )
    shown = sys.stderr.isatty() if progress is None else progress
    summary = train_word2vec(out, corpus, unit, settings, engine, threads, resume, save_every, shown)
    print(
        f"{summary['vocab']:,} words in the vocabulary, {summary['words']:,} in the corpus, {summary['epochs']} "
        f"epochs with the {summary['engine']} engine at {summary['words_per_s']:,.0f} words/s; "
        f"vectors: {out}/vectors.txt and vectors.bin"
    )


@command("word2vec neighbours")
def word2vec_neighbours_cmd(
    vectors: Annotated[str, "a word2vec file, text or binary (e.g. OUT/vectors.bin)"],
    words: Annotated[list[str], "the words whose nearest neighbours to show"],
    top: Annotated[int, "neighbours per word", COUNT] = 10,
) -> None:
    """The nearest words by cosine similarity, e.g. 北京 → 上海, 天津, 南京 ..."""
    from bertkit.lineage.vectors import WordVectors

    wv = WordVectors.load(vectors)
    for word in words:
        wv.vector(word)  # an unknown word is refused before anything prints
    for word in words:
        shown = "  ".join(f"{w} {s:.3f}" for w, s in wv.most_similar([word], topn=top))
        print(f"{word}: {shown}")


@command("word2vec analogy")
def word2vec_analogy_cmd(
    vectors: Annotated[str, "a word2vec file, text or binary"],
    a: Annotated[str, "a is to"],
    b: Annotated[str, "b as"],
    c: Annotated[str, "c is to ?"],
    top: Annotated[int, "answers shown", COUNT] = 5,
) -> None:
    """a : b :: c : ? — the words nearest to b - a + c (3CosAdd, the query words left out), e.g. 中国 北京 日本 →
    东京."""
    from bertkit.lineage.vectors import WordVectors

    if len({a, b, c}) < 3:
        raise BertkitError(f"an analogy needs three different words, got {a} {b} {c}")
    wv = WordVectors.load(vectors)
    shown = "  ".join(f"{w} {s:.3f}" for w, s in wv.most_similar([b, c], [a], topn=top))
    print(f"{a} : {b} :: {c} : {shown}")


@command("elmo train")
def elmo_train_cmd(
    *,
    out: Annotated[str, "run folder: model/, metrics.jsonl, curves.png, checkpoints/"],
    corpus: Annotated[list[str], "'peoples-daily' / 'reviews' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    steps: Annotated[int, "optimizer steps", COUNT] = 2000,
    hidden_size: Annotated[int, "LSTM units per direction and layer", Range(1, 8192)] = 256,
    embedding_size: Annotated[int, "character embedding size", Range(1, 8192)] = 128,
    num_layers: Annotated[int, "LSTM layers per direction", Range(1, 8)] = 2,
    dropout: Annotated[float, "dropout between layers", FRACTION] = 0.1,
    batch_size: Annotated[int, "sentences per step", Range(1, 65_536)] = 32,
    max_chars: Annotated[int, "longer sentences are cut into pieces of this many characters", Range(1, 4096)] = 62,
    lr: Annotated[float, "Adam's peak learning rate", Range(0, 10, low_open=True)] = 1e-3,
    warmup: Annotated[int, "warm-up steps", Range(0)] = 100,
    min_count: Annotated[int, "keep characters seen at least this often", COUNT] = 2,
    seed: Annotated[int, "random seed", SEED] = 0,
    eval_every: Annotated[int, "held-out loss every N steps", COUNT] = 200,
    save_every: Annotated[int, "checkpoint every N steps", COUNT] = 200,
    resume: Annotated[bool, "continue the run in --out from its newest checkpoint"] = False,
    progress: Annotated[bool | None, "progress bar on stderr (default: when stderr is a terminal)"] = None,
) -> None:
    """Train ELMo's biLM: forward and backward LSTM language models over characters, sharing the character
    embedding and the softmax, as the notes' formulas."""
    from bertkit.lineage.elmo_run import train_elmo

    config = {"hidden_size": hidden_size, "embedding_size": embedding_size, "num_layers": num_layers}
    config["dropout"] = dropout
    shown = sys.stderr.isatty() if progress is None else progress
    summary = train_elmo(
        out,
        corpus,
        config,
        steps,
        batch_size,
        max_chars,
        lr,
        warmup,
        min_count,
        seed,
        eval_every,
        save_every,
        resume=resume,
        progress=shown,
    )
    held = summary["held_out"]
    print(
        f"held-out loss {held['loss']:.3f} (forward {held['forward_loss']:.3f}, backward {held['backward_loss']:.3f}, "
        f"perplexity {held['perplexity']:.1f}); model: {out}/model"
    )


@command("elmo finetune")
def elmo_finetune_cmd(
    *,
    model: Annotated[str, "the model folder `elmo train` wrote (OUT/model)"],
    task: Annotated[
        Literal["sentiment", "peoples-daily-ner", "peoples-daily-cws"], "a built-in classification or tagging task"
    ],
    out: Annotated[str, "folder for summary.json and test_predictions.jsonl"],
    epochs: Annotated[int, "passes over the training split", Range(1, 1000)] = 3,
    batch_size: Annotated[int, "examples per step", Range(1, 65_536)] = 32,
    lr: Annotated[
        list[float],
        "Adam's learning rate for the mix and the head; several: each trained, the best on dev kept, test scored once",
        Range(0, 10, low_open=True, distinct=True),
    ] = [1e-3],  # noqa: B006
    max_chars: Annotated[int, "characters read per example (the rest tagged O)", Range(1, 4096)] = 126,
    max_train_examples: Annotated[int | None, "use only the first N training examples (as finetune)", COUNT] = None,
    max_eval_examples: Annotated[int | None, "use only the first N dev and N test examples", COUNT] = None,
    seed: Annotated[int, "random seed", SEED] = 0,
    progress: Annotated[bool | None, "progress bar on stderr (default: when stderr is a terminal)"] = None,
) -> None:
    """Fine-tune on the frozen biLM as the paper uses ELMo: a learned scalar mix of its layers (softmax weights and
    a scale) and a small head; the best epoch on dev is scored once on test."""
    from bertkit.finetune.tasks import DEFAULT_COLUMNS, load_task_cut
    from bertkit.lineage.elmo_run import finetune_elmo

    data = load_task_cut(task, (None, None, None), DEFAULT_COLUMNS, max_train_examples, max_eval_examples)
    shown = sys.stderr.isatty() if progress is None else progress
    s = finetune_elmo(model, data, out, epochs, batch_size, lr, max_chars, seed, shown)
    weights = ", ".join(f"{w:.3f}" for w in s["epochs"][-1]["mix"])
    chosen = f" (lr {s['lr']:g}, chosen on dev)" if len(lr) > 1 else ""
    print(
        f"{task}: dev {s['metric']} {s['dev']:.4f}, test {s['test']:.4f}{chosen}; last layer weights (0..L): {weights}"
    )
