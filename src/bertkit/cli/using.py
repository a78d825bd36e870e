"""Commands that use a model: `fill-mask`, `embed`, `similarity`, `attention`, `serve`, `export`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from bertkit.cli.table import COUNT, Range, command
from bertkit.errors import BertkitError, require_file


@command("fill-mask")
def fill_mask_cmd(
    model: Annotated[str, "a model folder with an MLM head"],
    texts: Annotated[list[str], "texts with one or more [MASK] tokens, e.g. 巴黎是[MASK]国的首都。"],
    top_k: Annotated[int, "predictions shown per [MASK]", COUNT] = 5,
) -> None:
    """Top-k predictions for each [MASK] in a text, from any MLM checkpoint."""
    from bertkit.use.fill_mask import fill_mask

    for text in texts:
        results = fill_mask(model, text, top_k=top_k)
        print(text)
        for i, candidates in enumerate(results):
            shown = "  ".join(f"{tok} {p:.3f}" for tok, p in candidates)
            print(f"  [MASK] #{i + 1}: {shown}")


@command("embed")
def embed_cmd(
    model: Annotated[str, "a sentence-transformers folder, or a BERT folder (mean pooling unless --pooling)"],
    input: Annotated[str, "text file, one text per line ('-': stdin)"] = "-",
    output: Annotated[str, "out.npy, out.safetensors or out.jsonl ('-': JSONL on stdout)"] = "-",
    pooling: Annotated[
        Literal["cls", "mean", "max", "mean_sqrt_len"] | None, "default: the folder's Pooling module, else mean"
    ] = None,
    normalize: Annotated[bool | None, "L2-normalise sentence vectors (default: the folder's Normalize module)"] = None,
    layers: Annotated[int | None, "average the last K hidden states (embedding output included)", COUNT] = None,
    layer_weights: Annotated[
        list[float] | None, "ELMo scalar mix: softmax(W) over the last len(W) hidden states, lowest first"
    ] = None,
    tokens: Annotated[bool, "a vector per token (L x H per text) instead of per text: .safetensors / .jsonl"] = False,
    precision: Annotated[
        Literal["fp32", "bf16", "int8", "auto", "auto-exact"],
        "bf16: a bf16 copy of the weights (fast with native bf16 only); int8: dynamic int8 projections; auto: the "
        "fastest path this machine has within a cosine of 0.99 of fp32, auto-exact: the fastest exact one",
    ] = "fp32",
    backend: Annotated[
        Literal["torch", "onnxruntime", "openvino"] | None,
        "onnxruntime / openvino: the exported graph (sentence vectors; onnxruntime fp32 / int8, openvino fp32 / "
        "bf16 / int8); default torch, or with --precision auto the fastest engine installed",
    ] = None,
    batch_tokens: Annotated[int, "padded tokens per batch; texts are sorted by length first", Range(1, 1 << 24)] = 4096,
    skip_empty: Annotated[bool, "skip empty lines (counted on stderr) instead of stopping at the first"] = False,
    progress: Annotated[bool | None, "progress bar with texts/s on stderr (default: when stderr is a terminal)"] = None,
) -> None:
    """Embed texts, one per line, with a sentence-transformers or BERT folder; the same vectors as
    sentence-transformers gives for its folders. Empty lines are an error (row i is line i) unless
    --skip-empty; JSONL and .safetensors outputs carry each vector's input line number."""
    import collections
    import time

    from bertkit.use.embed import load_embedder
    from bertkit.use.paths import fastest_embedder
    from bertkit.use.vector_io import VectorWriter, check_output_path, read_lines

    if layer_weights is not None and not layer_weights:
        raise BertkitError("--layer-weights needs one weight per layer to mix, e.g. --layer-weights 0 0 1")
    if layers is not None and layer_weights:
        raise BertkitError("--layers and --layer-weights both choose layers: give one")
    check_output_path(output, tokens)
    if input != "-":
        require_file(input, "text file")  # before the model loads
    embedder = load_embedder(model, pooling=pooling, normalize=normalize)
    if tokens or layers is not None or layer_weights:
        if backend not in (None, "torch"):
            raise BertkitError(
                f"--backend {backend} gives sentence vectors of the last layer: drop --tokens / --layers"
            )
        backend = "torch"  # token vectors and layer mixes: the torch backend's alone
    embedder, choice = fastest_embedder(embedder, precision, backend)  # exported and checked before any output
    if choice.why != "asked for":
        print(f"--precision {precision}: {choice.backend} {choice.precision} ({choice.why})", file=sys.stderr)
    precision = choice.precision
    if choice.backend != "torch":
        print(f"{choice.backend} {precision}: {embedder.session.check}", file=sys.stderr)
    skipped: list[int] = []
    writer = VectorWriter(output, tokens)
    keep_text = tokens and writer.kind == "jsonl"  # JSONL token output names each token
    pending: collections.deque[tuple[int, str | None]] = collections.deque()  # read ahead of the vectors

    def texts():
        for n, text in read_lines(input, skip_empty, skipped):
            pending.append((n, text if keep_text else None))
            yield text

    start = time.perf_counter()
    try:
        chunks = embedder.encode_iter(
            texts(),
            batch_tokens=batch_tokens,
            layers=layer_weights or layers,
            output="token" if tokens else "sentence",
            precision=precision,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
        for chunk in chunks:
            lines, chunk_texts = zip(*(pending.popleft() for _ in range(len(chunk))), strict=True)
            words = None
            if keep_text:
                words = [embedder.tokenizer.convert_ids_to_tokens(ids) for ids in embedder.tokenize(chunk_texts)]
            writer.write(chunk, list(lines), words)
        if writer.rows == 0:
            raise BertkitError(f"{input}: no text to embed (the input is empty)")
        writer.commit(embedder.dim if not tokens else embedder.encoder.config.hidden_size)
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - start
    note = f"; skipped {len(skipped)} empty line(s)" if skipped else ""
    where = "" if output == "-" else f" -> {output}"
    print(f"model: {embedder.source}", file=sys.stderr)  # after the work, so that an error stays one line
    rate = writer.rows / max(seconds, 1e-9)
    print(f"embedded {writer.rows} texts in {seconds:.1f} s ({rate:.1f} texts/s){note}{where}", file=sys.stderr)


@command("similarity")
def similarity_cmd(
    model: Annotated[str, "a sentence-transformers or BERT folder"],
    texts: Annotated[list[str], "two texts, or more (a cosine matrix)"],
    word: Annotated[str | None, "compare this word's contextual vectors in the texts instead"] = None,
    senses: Annotated[
        list[str] | None, "--word: the word's sense in each text (e.g. 水果 品牌 …): mean cosine within / across"
    ] = None,
    word2vec: Annotated[str | None, "--word: a word2vec vectors file, for the static vector's row"] = None,
    elmo: Annotated[str | None, "--word: an ELMo model folder (`elmo train`'s OUT/model), for its layers"] = None,
    out: Annotated[str | None, "--word: folder for polysemy.png, polysemy.md and polysemy.json"] = None,
    pooling: Annotated[
        Literal["cls", "mean", "max", "mean_sqrt_len"] | None, "default: the folder's Pooling module, else mean"
    ] = None,
    layers: Annotated[int | None, "average the last K hidden states (embedding output included)", COUNT] = None,
) -> None:
    """Cosine similarity of texts' sentence vectors, or (--word) of one word's vectors in several contexts, e.g.
    苹果 in 我喜欢吃苹果 and in 苹果和华为哪个牌子好: BERT gives the word a vector per context. With --senses,
    --word2vec, --elmo, --out or more than two texts, the notes' polysemy lesson: the cosine matrix at every
    layer of the model (and of ELMo), beside word2vec's one vector."""
    import numpy as np

    from bertkit.use.embed import cosine, load_embedder

    if len(texts) < 2:
        raise BertkitError("give two or more texts to compare")
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise BertkitError(f"text {i} is empty; a cosine needs two texts with words in them")
    lesson = word is not None and (len(texts) > 2 or any(x is not None for x in (senses, word2vec, elmo, out)))
    if word is None and any(x is not None for x in (senses, word2vec, elmo, out)):
        raise BertkitError("--senses, --word2vec, --elmo and --out belong to the polysemy lesson: give --word too")
    if senses is not None and len(senses) != len(texts):
        raise BertkitError(f"--senses gives {len(senses)} senses for {len(texts)} texts: give one per text")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise BertkitError(f"--out {out} is a file; give a folder")
    embedder = load_embedder(model, pooling=pooling)
    if word is None:
        vectors = embedder.encode(texts, layers=layers)
        if len(texts) == 2:
            print(f"cosine {cosine(vectors[0], vectors[1]):.4f}")
            return
        from bertkit.use.polysemy import cosine_matrix

        for i, row in enumerate(cosine_matrix(np.asarray(vectors)), 1):
            print(f"{i}: " + " ".join(f"{c:.4f}" for c in row))
        return
    if not lesson:
        a, b = (embedder.word_vector(t, word, layers=layers) for t in texts)
        print(f"{word!r} in {texts[0]!r} vs in {texts[1]!r}: cosine {cosine(a, b):.4f} (contextual vectors)")
        print("a static word vector (word2vec, or BERT's own input embedding) would give 1.0000: one vector per word")
        return
    _polysemy_lesson(embedder, model, texts, word, senses, word2vec, elmo, out)


def _polysemy_lesson(embedder, model, texts, word, senses, word2vec, elmo, out) -> None:
    from bertkit.fonts import MISSING_FONT_ADVICE
    from bertkit.use import polysemy

    static = None
    if word2vec is not None:
        from bertkit.lineage.vectors import WordVectors

        static = WordVectors.load(word2vec).vector(word)  # a word it does not know is refused before any work
    bilm = None
    if elmo is not None:
        from bertkit.lineage.elmo import load_bilm

        bilm = load_bilm(elmo)
    per_text = [embedder.word_layers(t, word) for t in texts]
    names = ["0 (embeddings)", *(str(j) for j in range(1, len(per_text[0])))]
    rows = polysemy.rows_of("BERT", per_text, names)
    if bilm is not None:
        from bertkit.lineage.elmo import word_layers

        per_text = [word_layers(*bilm, t, word).numpy() for t in texts]
        rows += polysemy.rows_of("ELMo", per_text, ["0 (characters)", *(str(j) for j in range(1, len(per_text[0])))])
    if static is not None:
        rows += polysemy.rows_of("word2vec", [static[None, :] for _ in texts], ["(one vector)"])
    header, body = polysemy.table(rows, texts, senses)
    for i, t in enumerate(texts, 1):
        print(f"{i}: {t}" + (f"  [{senses[i - 1]}]" if senses else ""))
    widths = [max(len(h), *(len(r[k]) for r in body)) for k, h in enumerate(header)]
    for line in (header, *body):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    if out is None:
        return
    import json

    from bertkit.config import atomic_write_text

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    missing = polysemy.draw(rows, texts, word, folder / "polysemy.png.tmp")
    os.replace(folder / "polysemy.png.tmp", folder / "polysemy.png")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in body),
    ]
    atomic_write_text(folder / "polysemy.md", "\n".join(lines) + "\n")
    data = {"model": model, "word": word, "texts": texts, "senses": senses}
    data["rows"] = [{"model": r.model, "layer": r.layer, "cosines": r.cosines.round(6).tolist()} for r in rows]
    atomic_write_text(folder / "polysemy.json", json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote polysemy.png, polysemy.md and polysemy.json to {out}")
    if missing:
        print(f"warning: {MISSING_FONT_ADVICE}", file=sys.stderr)


@command("attention")
def attention_cmd(
    model: Annotated[str, "a model folder of any family bertkit loads"],
    text: Annotated[str, "the text to look inside, e.g. 今天天气很好"],
    *,
    out: Annotated[str, "folder for the pictures, attention.json and attention.html (created; our files replaced)"],
    pair: Annotated[str | None, "a second text, as a sentence pair ([SEP] between, token type 1)"] = None,
    layer: Annotated[int | None, "one layer, from 1 (default: a grid of every layer's heads)"] = None,
    head: Annotated[int | None, "one head, from 1: its heat map in each chosen layer (default: grids only)"] = None,
    pad_to: Annotated[int | None, "pad to this many tokens, to see that padding gets no attention", COUNT] = None,
) -> None:
    """The attention of every layer and head for a text: a heat map per chosen head with the tokens on both
    axes, a grid of each layer's heads, the probabilities as JSON, and one self-contained HTML page where you
    pick a layer and head and hover a token to see where it looks and what looks at it."""
    from bertkit.fonts import MISSING_FONT_ADVICE
    from bertkit.use.attention import attention_maps, check_choice, check_text, write_all

    check_text(text)
    if Path(out).exists() and not Path(out).is_dir():
        raise BertkitError(f"--out {out} is a file; give a folder for the pictures and the page")
    maps = attention_maps(model, text, pair, pad_to)
    check_choice(layer, maps.num_layers, "--layer", "layers")
    check_choice(head, maps.num_heads, "--head", "heads")
    layers = [layer] if layer is not None else list(range(1, maps.num_layers + 1))
    heads = [head] if head is not None else []
    files, missing = write_all(maps, Path(out), layers, heads, (layers[-1], head or 1))
    print(f"{len(maps.tokens)} tokens: {' '.join(maps.tokens)}")
    print(f"wrote {len(files)} files to {out}: open {Path(out) / 'attention.html'} in a browser")
    if missing:
        print(f"warning: {MISSING_FONT_ADVICE}", file=sys.stderr)


@command("serve")
def serve_cmd(
    model: Annotated[str, "a sentence-transformers folder, a BERT folder, or a fine-tuned folder"],
    host: Annotated[str, "address to listen on (0.0.0.0: every interface)"] = "127.0.0.1",
    port: Annotated[int, "port to listen on (0: any free port, printed at start)", Range(0, 65_535)] = 8000,
    max_batch_size: Annotated[int, "texts per model call, gathered from concurrent requests", COUNT] = 64,
    max_texts: Annotated[int, "texts in one request; more is answered 413", COUNT] = 256,
    max_request_bytes: Annotated[int, "request body size; more is answered 413", COUNT] = 1 << 20,
    batch_wait_ms: Annotated[float, "how long a batch waits for more requests before it runs", Range(0, 60_000)] = 5.0,
    precision: Annotated[
        Literal["fp32", "bf16", "int8", "auto", "auto-exact"], "/embed's precision, as `embed --precision`"
    ] = "fp32",
    backend: Annotated[
        Literal["torch", "onnxruntime", "openvino"] | None, "/embed's backend, as `embed --backend`"
    ] = None,
    index: Annotated[str | None, "a `bertkit index` folder built with this model: POST /search"] = None,
) -> None:
    """Serve a model folder over HTTP: POST /embed, /fill-mask (MLM head), /classify or /tag (fine-tuned
    folders), /search (with --index); GET /health (liveness) and /ready (readiness).

    Requests of concurrent clients are batched into one model call (up to --max-batch-size texts, waiting at
    most --batch-wait-ms); bad requests get a 4xx with {"error": message}. This runs one process. For several
    worker processes (each loads its own copy of the model and batches its own requests) run uvicorn with
    bertkit's app factory: `BERTKIT_SERVE_MODEL=FOLDER uvicorn bertkit.use.serve:app_from_env --factory --workers
    N --host 0.0.0.0 --port 8000`, with the limits as BERTKIT_SERVE_MAX_BATCH_SIZE, BERTKIT_SERVE_MAX_TEXTS,
    BERTKIT_SERVE_MAX_REQUEST_BYTES, BERTKIT_SERVE_BATCH_WAIT_MS, BERTKIT_SERVE_PRECISION and
    BERTKIT_SERVE_BACKEND (and BERTKIT_SERVE_INDEX), and OMP_NUM_THREADS set to (cores / N) so
    that the workers do not fight over cores. Each worker answers /ready with 503 until its model is loaded."""
    from bertkit.use.serve import ServeConfig, serve

    config = ServeConfig(max_batch_size, max_texts, max_request_bytes, batch_wait_ms, precision, backend, index)
    serve(model, host, port, config)


@command("export")
def export_cmd(
    model: Annotated[str, "a sentence-transformers folder (sentence vectors) or a BERT folder (hidden states)"],
    *,
    onnx: Annotated[str, "the .onnx file to write; an existing one is replaced only by a checked export"],
    opset: Annotated[int, "ONNX opset version", Range(14, 20)] = 17,
) -> None:
    """Export the encoder to ONNX with dynamic batch and sequence axes, then check it with onnxruntime against
    PyTorch on batches of several sizes and lengths (max abs diff <= 1e-4).

    A sentence-transformers folder exports input_ids, attention_mask -> sentence_embedding (pooling, Dense
    and Normalize included); a BERT folder exports input_ids, attention_mask, token_type_ids ->
    last_hidden_state (and pooler_output when it has a pooler). Tokenize with the folder's tokenizer,
    truncated to the max_seq_length stored in the file's metadata."""
    from bertkit.use.export import export_onnx

    export_onnx(model, onnx, opset=opset)


@command("generate")
def generate_cmd(
    model: Annotated[str, "a GPT-2 folder (GPT2LMHeadModel: `bertkit pretrain --recipe gpt`)"],
    prompts: Annotated[list[str], "texts to continue, e.g. 今天天气"],
    max_new_tokens: Annotated[int, "tokens generated at most (fewer when the end-of-text token comes)", COUNT] = 50,
    sample: Annotated[bool, "draw each token instead of taking the most likely (implied by the three below)"] = False,
    temperature: Annotated[
        float | None, "divide the logits by T before sampling (< 1: surer; default 1)", Range(0, None, low_open=True)
    ] = None,
    top_k: Annotated[int | None, "sample among the K most likely tokens only", COUNT] = None,
    top_p: Annotated[
        float | None,
        "sample among the fewest most likely tokens whose probabilities reach P (nucleus sampling)",
        Range(0, 1, low_open=True),
    ] = None,
    num_samples: Annotated[int, "continuations per prompt (seeds SEED, SEED+1, ...; needs sampling)", COUNT] = 1,
    seed: Annotated[int, "random seed of the sampling", Range(0, 2**32 - 1)] = 0,
    no_cache: Annotated[bool, "recompute the whole text for every token instead of keeping a KV cache"] = False,
) -> None:
    """Continue each prompt with a left-to-right language model: greedy by default, or sampled with temperature,
    top-k and top-p. A KV cache keeps each layer's keys and values, so each token costs one position's work."""
    from bertkit.hf import load_pretrained
    from bertkit.use.generate import (
        Sampling,
        check_generator,
        check_room,
        decode,
        end_token,
        generate_ids,
        prompt_ids,
    )

    sampling = Sampling(
        sample=sample or any(v is not None for v in (temperature, top_k, top_p)),
        temperature=1.0 if temperature is None else temperature,
        top_k=top_k or 0,
        top_p=1.0 if top_p is None else top_p,
    )
    if num_samples > 1 and not sampling.sample:
        raise BertkitError(
            f"--num-samples {num_samples}: greedy generation gives one text; add --sample (or --temperature, "
            "--top-k, --top-p)"
        )
    ckpt = load_pretrained(model)
    check_generator(ckpt, model)
    inputs = [prompt_ids(ckpt, p) for p in prompts]  # every prompt checked before any runs
    for prompt, ids in zip(prompts, inputs, strict=True):
        check_room(ckpt, len(ids), max_new_tokens, f"prompt {prompt[:40]!r}")
    for prompt, ids in zip(prompts, inputs, strict=True):
        for k in range(num_samples):
            new = generate_ids(ckpt, ids, max_new_tokens, sampling, seed + k, not no_cache, end_token(ckpt))
            print(prompt + decode(ckpt, new))
