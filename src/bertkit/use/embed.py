"""Sentence and token embeddings from a model folder: sentence-transformers compatible, fast on CPU.

    texts ─► WordPiece ids, truncated to max_seq_length ─► sorted by length, cut into batches of at most
          `batch_tokens` padded tokens ─► encoder (unpadded: work follows real tokens) ─► hidden states
          ─► optional mix of the last k layers ─► token vectors (L × H per text)
                                                 ─► pooling ─► [Dense] ─► [L2 normalise] ─► 1 × H per text
          ─► back in input order

`load_embedder(folder)` reads a sentence-transformers folder as it is: `modules.json` (Transformer, Pooling,
Dense, Normalize), the pooling config, and `sentence_bert_config.json`'s `max_seq_length` and
`do_lower_case`; it gives the same vectors as `SentenceTransformer(folder).encode`. A plain BERT folder
(no `modules.json`) gets mean pooling over real tokens, [CLS] and [SEP] included, without normalisation:
`DEFAULT_POOLING`, and `Embedder.source` says which applied.

Choices:
- Speed comes from not computing padding: texts are sorted by length and batched by a token budget, so a
  batch holds many short texts or a few long ones; the encoder runs its linear layers on real tokens only
  (model.py, "unpadded"); everything runs under `torch.inference_mode`. Results are put back in input order.
- Precision is "fp32", "bf16" (a copy of the encoder with bf16 weights, made once: 12-20% faster than
  autocast, which casts every weight at every call; min cosine to fp32 0.9998 on the benchmark's texts;
  fast only where the CPU has bf16 instructions) or "int8" (dynamic
  quantisation of the SmoothQuant-smoothed attention projections, see `quantize_int8`; built and calibrated
  once, on first use).
- `onnx_backend.onnx_embedder(embedder, precision)` is an Embedder whose encoder runs in onnxruntime (the
  exported graph, fp32 or int8), with these same batches: `--backend onnxruntime`.
- Pooling honours `attention_mask`: "cls" (first token), "mean", "max", "mean_sqrt_len" (sum / √length).
- Token vectors are the encoder's hidden states for every token, [CLS] and [SEP] included, never normalised
  (as sentence-transformers' "token_embeddings"); `normalize` applies to sentence vectors.
- `layers`: None is the last layer; k averages the last k hidden states; a list of k weights is ELMo's
  scalar mix, gamma · Σ softmax(w)_j · h_j over the last k hidden states, lowest layer first. The
  embedding output counts as hidden state 0, so k can be up to num_hidden_layers + 1.
- `encode_iter` streams: it takes any iterable of texts and yields results chunk by chunk, in input order,
  holding one chunk in memory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertkit.errors import BertkitError, CheckpointError
from bertkit.hf import Checkpoint, load_pretrained
from bertkit.model import BertEncoder
from bertkit.threads import follow_load
from bertkit.tokenizer import Tokenizer
from bertkit.use.int8 import CALIBRATION_TEXTS, quantize_int8

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len")
DEFAULT_POOLING = "mean"  # for plain BERT folders: the pooling most sentence-embedding models are trained with
PRECISIONS = ("fp32", "bf16", "int8")

# sentence-transformers' pooling config keys, old (boolean flags) and new ("pooling_mode": name) spellings.
ST_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
ST_POOLING_NAMES = {"cls": "cls", "mean": "mean", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len"}

# Activations a sentence-transformers Dense module may name, by class name.
DENSE_ACTIVATIONS = {"Tanh": nn.Tanh, "Identity": nn.Identity, "ReLU": nn.ReLU, "GELU": nn.GELU, "Sigmoid": nn.Sigmoid}
Precision = Literal["fp32", "bf16", "int8"]
Output = Literal["sentence", "token"]


@dataclass
class Embedder:
    """An encoder, its tokenizer and the folder's pooling settings; `encode` turns texts into vectors."""

    encoder: BertEncoder
    tokenizer: Tokenizer
    pooling: str = DEFAULT_POOLING
    normalize: bool = False
    max_seq_length: int = 512  # tokens, [CLS] and [SEP] included; longer texts are truncated
    do_lower_case: bool = False  # sentence-transformers' own lower-casing, before the tokenizer
    dense: list[nn.Module] = field(default_factory=list)  # sentence-transformers Dense modules, in order
    source: str = ""  # what was read, in words: shown by the CLI
    _int8: BertEncoder | None = field(default=None, repr=False)
    _bf16: BertEncoder | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_pooling(self.pooling)
        limit = self.encoder.config.max_length
        if not 2 < self.max_seq_length <= limit:
            raise BertkitError(f"max_seq_length={self.max_seq_length}: must be 3..{limit} (max_position_embeddings)")
        self.encoder.eval()
        for d in self.dense:
            d.eval()

    def to(self, device: str | torch.device) -> Embedder:
        """Run on `device` ("cuda", "cpu"); vectors still come back as NumPy arrays. Returns self."""
        self.encoder.to(device)
        for d in self.dense:
            d.to(device)
        self._bf16 = self._int8 = None  # rebuilt on the new device when asked for
        return self

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def dim(self) -> int:
        """Length of a sentence vector (the last Dense layer's output size, else hidden_size)."""
        return self.dense[-1].linear.out_features if self.dense else self.encoder.config.hidden_size

    # ---- encoding -----------------------------------------------------------------------------------------

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        batch_tokens: int = 4096,
        pooling: str | None = None,
        normalize: bool | None = None,
        layers: int | Sequence[float] | None = None,
        gamma: float = 1.0,
        output: Output = "sentence",
        precision: Precision = "fp32",
        progress: bool = False,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed `texts`: an (n, dim) float32 array of sentence vectors, or n (L_i, H) token matrices.

        `batch_tokens` bounds a batch's padded size (texts × longest length); `pooling` and `normalize`
        default to the folder's. A single string gives a (dim,) vector or one (L, H) matrix.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        chunks = self.encode_iter(
            texts,
            chunk_size=max(1, len(texts)),
            batch_tokens=batch_tokens,
            pooling=pooling,
            normalize=normalize,
            layers=layers,
            gamma=gamma,
            output=output,
            precision=precision,
            progress=progress,
        )
        results = list(chunks)
        if output == "token":
            out = [m for chunk in results for m in chunk]
            return out[0] if single else out
        out = np.concatenate(results) if results else np.zeros((0, self.dim), np.float32)
        return out[0] if single else out

    def encode_iter(
        self,
        texts: Iterable[str],
        *,
        chunk_size: int = 4096,
        batch_tokens: int = 4096,
        pooling: str | None = None,
        normalize: bool | None = None,
        layers: int | Sequence[float] | None = None,
        gamma: float = 1.0,
        output: Output = "sentence",
        precision: Precision = "fp32",
        progress: bool = False,
    ) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Like `encode`, streamed: reads `chunk_size` texts at a time and yields each chunk's results
        (an array, or a list of token matrices) in input order. Memory is bounded by one chunk."""
        pooling = self.pooling if pooling is None else check_pooling(pooling)
        normalize = self.normalize if normalize is None else normalize
        if output not in ("sentence", "token"):
            raise BertkitError(f"output={output!r}: use 'sentence' or 'token'")
        if precision not in PRECISIONS:
            raise BertkitError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        if batch_tokens < self.max_seq_length:
            raise BertkitError(
                f"--batch-tokens {batch_tokens} is smaller than the model's max_seq_length ({self.max_seq_length}): "
                "a batch must hold at least one text of the longest length"
            )
        if chunk_size < 1:
            raise BertkitError(f"chunk_size={chunk_size}: must be at least 1")
        mix = layer_mix(layers, gamma, self.encoder.config.num_hidden_layers)
        encoder = self._encoder_for(precision)
        from tqdm import tqdm

        total = len(texts) if isinstance(texts, Sequence) else None
        bar = tqdm(total=total, unit="text", desc="embedding", disable=not progress, file=sys.stderr, delay=1)
        it = iter(texts)
        try:
            while chunk := list(islice(it, chunk_size)):
                for i, t in enumerate(chunk):
                    if not isinstance(t, str):
                        raise BertkitError(f"text {bar.n + i} is a {type(t).__name__}, not a str")
                yield self._encode_chunk(encoder, chunk, batch_tokens, pooling, normalize, mix, output, precision)
                bar.update(len(chunk))
        finally:
            bar.close()

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text, [CLS] … [SEP], truncated to max_seq_length as sentence-transformers does."""
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        batch = self.tokenizer(list(texts), max_length=self.max_seq_length, padding=False, return_tensors=None)
        return batch["input_ids"]

    @torch.inference_mode()
    def _encode_chunk(
        self,
        encoder: BertEncoder,
        texts: list[str],
        batch_tokens: int,
        pooling: str,
        normalize: bool,
        mix: torch.Tensor | None,
        output: Output,
        precision: Precision,
    ) -> np.ndarray | list[np.ndarray]:
        ids = self.tokenize(texts)
        results: list = [None] * len(ids)
        device = next(encoder.parameters()).device
        for batch in length_batches([len(x) for x in ids], batch_tokens):
            follow_load()  # a batch boundary: the thread count may follow the load (bertkit.threads)
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], self.tokenizer.pad_token_id)
            input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
            out = encoder(input_ids, attention_mask, output_hidden_states=mix is not None, unpad=True)
            if mix is None:
                hidden = out.last_hidden_state.float()  # (B, T, H)
            else:
                stacked = torch.stack(out.hidden_states[-len(mix) :]).float()
                hidden = torch.einsum("k,kbth->bth", mix.to(device), stacked)
            if output == "token":
                lengths = attention_mask.sum(1).tolist()
                for row, i in enumerate(batch):
                    results[i] = hidden[row, : lengths[row]].cpu().numpy().copy()
                continue
            vectors = pool(hidden, attention_mask, pooling)  # (B, H)
            for d in self.dense:
                vectors = d(vectors)
            if normalize:
                vectors = F.normalize(vectors, p=2, dim=-1)
            vectors = vectors.cpu()
            for row, i in enumerate(batch):
                results[i] = vectors[row]
        if output == "token":
            return results
        return torch.stack(results).numpy() if results else np.zeros((0, self.dim), np.float32)

    def _encoder_for(self, precision: Precision) -> BertEncoder:
        if precision == "bf16":
            if self._bf16 is None:
                import copy

                self._bf16 = copy.deepcopy(self.encoder).to(torch.bfloat16).eval()
            return self._bf16
        if precision != "int8":
            return self.encoder
        if self.device.type != "cpu":
            raise BertkitError("int8 embedding runs on the CPU (dynamic quantisation); use bf16 on a GPU")
        if self._int8 is None:
            maxima = {name: m for name, m in self._input_maxima().items() if ".attn." in name}
            self._int8 = quantize_int8(self.encoder, maxima)
        return self._int8

    def _input_maxima(self) -> dict[str, torch.Tensor]:
        """Per-channel max |input| over `CALIBRATION_TEXTS` (one fp32 run) of every attention projection
        (`layers.i.attn.query` … `.out`) and of every FFN's first linear layer (`layers.i.ffn.up`)."""
        maxima: dict[str, torch.Tensor] = {}

        def record(*names: str):
            def hook(module, inputs, output):
                x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)  # (H,)
                for name in names:
                    maxima[name] = torch.maximum(maxima[name], x) if name in maxima else x

            return hook

        hooks = []
        for i, layer in enumerate(self.encoder.layers):
            # Q, K and V run fused in fp32 (`SelfAttention.qkv`), so their shared input is the attention's own.
            qkv = (f"layers.{i}.attn.query", f"layers.{i}.attn.key", f"layers.{i}.attn.value")
            hooks.append(layer.attn.register_forward_hook(record(*qkv)))
            hooks.append(layer.attn.out.register_forward_hook(record(f"layers.{i}.attn.out")))
            hooks.append(layer.ffn.register_forward_hook(record(f"layers.{i}.ffn.up")))  # the FFN's input is up's
        try:
            self.encode(CALIBRATION_TEXTS, precision="fp32")
        finally:
            for h in hooks:
                h.remove()
        return maxima

    # ---- words in context ---------------------------------------------------------------------------------

    def word_vector(
        self, text: str, word: str, *, layers: int | Sequence[float] | None = None, precision: Precision = "fp32"
    ) -> np.ndarray:
        """The contextual vector of `word` in `text`: the mean of its tokens' vectors (first occurrence).

        The notes' example: 苹果 in 我喜欢吃苹果 (the fruit) and in 苹果和华为哪个牌子好 (the brand) get different
        vectors; a static embedding (word2vec, or BERT's own input embedding) gives both the same one.
        """
        tokens = self.encode(text, output="token", layers=layers, precision=precision)
        return tokens[self.word_positions(text, word)].mean(0)

    def word_positions(self, text: str, word: str) -> list[int]:
        """The token positions ([CLS] = 0) of the first occurrence of `word` in `text`, as `tokenize` reads it."""
        source, target = (text.lower(), word.lower()) if self.do_lower_case else (text, word)  # as `tokenize`
        start = source.find(target) if word else -1
        if start < 0:
            raise BertkitError(f"{word!r} does not occur in {text!r}")
        end = start + len(target)
        enc = self.tokenizer.encode(source, max_length=self.max_seq_length)  # offsets index into `source`
        positions = [
            i
            for i, ((a, b), special) in enumerate(zip(enc.offsets, enc.special_tokens_mask, strict=True))
            if not special and a < end and b > start
        ]
        if not positions:
            raise BertkitError(
                f"{word!r} in {text!r} falls after the first {self.max_seq_length} tokens (max_seq_length)"
            )
        return positions

    @torch.inference_mode()
    def word_layers(self, text: str, word: str) -> np.ndarray:
        """(layers + 1, H): `word`'s contextual vector in `text` at every hidden state (0: the embeddings' output),
        each the mean of its tokens' vectors; the polysemy lesson's rows."""
        positions = self.word_positions(text, word)
        ids = torch.tensor(self.tokenize([text]), device=self.device)
        out = self.encoder(ids, torch.ones_like(ids), output_hidden_states=True)
        return torch.stack([h[0, positions].float().mean(0) for h in out.hidden_states]).cpu().numpy()


def check_pooling(pooling: str) -> str:
    if pooling not in POOLING_MODES:
        raise BertkitError(f"pooling={pooling!r}: use one of {', '.join(POOLING_MODES)}")
    return pooling


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


# ---- batching and pooling: pure functions ---------------------------------------------------------------


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, each at most `batch_tokens` once padded.

    Longest first, so that a batch too large for memory fails at once rather than at the end.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        # The batch's first text is its longest: adding one more text costs `longest` padded tokens.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def pad_batch(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: input_ids and attention_mask, each (B, T) int64."""
    T = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), T), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
        attention_mask[row, : len(x)] = 1
    return input_ids, attention_mask


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, H) hidden states -> (B, H) sentence vectors, over the tokens where attention_mask is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    summed, count = (hidden * mask).sum(1), mask.sum(1).clamp(min=1e-9)  # (B, H), (B, 1)
    if mode == "mean":
        return summed / count
    if mode == "mean_sqrt_len":
        return summed / count.sqrt()
    raise BertkitError(f"pooling={mode!r}: use one of {', '.join(POOLING_MODES)}")


def layer_mix(layers: int | Sequence[float] | None, gamma: float, num_hidden_layers: int) -> torch.Tensor | None:
    """Weights over the last k hidden states (lowest first), or None for the last layer alone."""
    if layers is None:
        return None
    available = num_hidden_layers + 1  # the embedding output, then each layer
    if isinstance(layers, int) and not isinstance(layers, bool):
        if not 1 <= layers <= available:
            raise BertkitError(f"layers={layers}: the model has {available} hidden states (embeddings + layers)")
        return torch.full((layers,), gamma / layers)
    weights = torch.tensor([float(w) for w in layers])
    if not 1 <= len(weights) <= available:
        raise BertkitError(
            f"{len(weights)} layer weights: give 1..{available} (the model has {num_hidden_layers} layers "
            "plus the embedding output)"
        )
    if not torch.isfinite(weights).all():
        raise BertkitError(f"layer weights {layers} must be finite numbers")
    return gamma * weights.softmax(0)  # ELMo's scalar mix: gamma · softmax(w)


# ---- loading --------------------------------------------------------------------------------------------


class Dense(nn.Module):
    """sentence-transformers' Dense module: activation(linear(x)), applied to sentence vectors."""

    def __init__(self, in_features: int, out_features: int, bias: bool, activation: nn.Module):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


def load_embedder(
    folder: str | os.PathLike,
    pooling: str | None = None,
    normalize: bool | None = None,
    checkpoint: Checkpoint | None = None,
) -> Embedder:
    """A sentence-transformers folder as it is, or a plain BERT folder with `pooling` (default mean).

    `pooling` and `normalize` override what the folder says. `checkpoint` is the plain folder's checkpoint
    when the caller has loaded it already (serve.py reads its heads too): the Embedder then shares its encoder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such model folder")
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        settings = _read_sentence_transformers(folder, modules_file)
    else:
        settings = {
            "root": folder,
            "pooling": DEFAULT_POOLING,
            "normalize": False,
            "dense": [],
            "source": f"{folder}: a plain BERT folder (no modules.json): {DEFAULT_POOLING} pooling, no normalisation",
        }
    if checkpoint is not None and modules_file.is_file():
        raise ValueError(f"{folder}: a sentence-transformers folder loads its own checkpoint (its Transformer module)")
    ckpt = checkpoint if checkpoint is not None else load_pretrained(settings["root"])
    if ckpt.tokenizer is None:
        raise CheckpointError(f"{settings['root']}: no tokenizer.json or vocab.txt; embeddings need the tokenizer")
    config = ckpt.config
    limit = min(ckpt.tokenizer.model_max_length, config.max_length)
    max_seq_length = settings.get("max_seq_length") or limit
    width = config.hidden_size
    for d in settings["dense"]:
        if d.linear.in_features != width:
            raise CheckpointError(f"{folder}: a Dense layer takes {d.linear.in_features} features but gets {width}")
        width = d.linear.out_features
    source = settings["source"]
    if pooling is not None:
        source += f"; pooling {pooling} (asked for)"
    if normalize is not None:
        source += f"; normalize={normalize} (asked for)"
    return Embedder(
        encoder=ckpt.encoder,
        tokenizer=ckpt.tokenizer,
        pooling=check_pooling(pooling) if pooling is not None else settings["pooling"],
        normalize=settings["normalize"] if normalize is None else normalize,
        max_seq_length=max_seq_length,
        do_lower_case=settings.get("do_lower_case", False),
        dense=settings["dense"],
        source=source,
    )


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from None


def _read_sentence_transformers(folder: Path, modules_file: Path) -> dict:
    """modules.json -> where the BERT weights are, pooling, Dense layers, normalisation, max_seq_length."""
    modules = _read_json(modules_file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise CheckpointError(f"{modules_file}: expected a list of {{'type': ..., 'path': ...}} entries")
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer":
        raise CheckpointError(f"{modules_file}: the first module must be a Transformer, not {modules[0]['type']!r}")
    settings: dict = {"pooling": None, "normalize": False, "dense": []}
    for m, kind in zip(modules, kinds, strict=True):
        path = folder / m.get("path", "")
        if kind == "Transformer":
            settings["root"] = path
            config_file = path / "sentence_bert_config.json"
            st_config = _read_json(config_file) if config_file.is_file() else {}
            settings["max_seq_length"] = st_config.get("max_seq_length")
            settings["do_lower_case"] = bool(st_config.get("do_lower_case", False))
        elif kind == "Pooling":
            if settings["dense"] or settings["normalize"]:
                raise CheckpointError(f"{modules_file}: Pooling must come before Dense and Normalize")
            settings["pooling"] = _read_pooling(path / "config.json")
        elif kind == "Dense":
            if settings["pooling"] is None:
                raise CheckpointError(f"{modules_file}: a Dense module before Pooling is not supported")
            settings["dense"].append(_read_dense(path))
        elif kind == "Normalize":
            settings["normalize"] = True
        else:
            raise CheckpointError(
                f"{modules_file}: module {m['type']!r} is not supported (bertkit reads Transformer, Pooling, "
                "Dense and Normalize)"
            )
    if settings["pooling"] is None:
        settings["pooling"] = DEFAULT_POOLING
        pooling_note = f"no Pooling module: {DEFAULT_POOLING} pooling"
    else:
        pooling_note = f"{settings['pooling']} pooling"
    dense = f", {len(settings['dense'])} Dense layer(s)" if settings["dense"] else ""
    norm = ", L2-normalised" if settings["normalize"] else ""
    settings["source"] = f"{folder}: a sentence-transformers folder: {pooling_note}{dense}{norm}"
    return settings


def _read_pooling(config_file: Path) -> str:
    if not config_file.is_file():
        raise CheckpointError(f"{config_file}: the Pooling module has no config.json")
    config = _read_json(config_file)
    if "pooling_mode" in config:
        raw = config["pooling_mode"]
        names = [raw] if isinstance(raw, str) else list(raw)
        modes = [ST_POOLING_NAMES.get(n, n) for n in names]
    else:
        modes = [mode for key, mode in ST_POOLING_FLAGS.items() if config.get(key)]
    if len(modes) != 1:
        raise CheckpointError(
            f"{config_file}: {'no pooling mode is set' if not modes else 'pooling modes ' + ' + '.join(modes)}; "
            "bertkit supports exactly one of cls, mean, max, mean_sqrt_len"
        )
    if modes[0] not in POOLING_MODES:
        raise CheckpointError(f"{config_file}: pooling mode {modes[0]!r} is not supported ({', '.join(POOLING_MODES)})")
    if config.get("include_prompt", True) is False:
        raise CheckpointError(f"{config_file}: include_prompt=false (prompt-aware pooling) is not supported")
    return modes[0]


def _read_dense(folder: Path) -> Dense:
    config = _read_json(folder / "config.json")
    # sentence-transformers' default activation, when the config names none, is Tanh.
    activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh")).rsplit(".", 1)[-1]
    if config.get("use_residual"):
        raise CheckpointError(f"{folder}/config.json: a residual Dense module (use_residual) is not supported")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") not in (None, "sentence_embedding"):
            raise CheckpointError(
                f"{folder}/config.json: {key}={config[key]!r}; bertkit applies Dense to sentence vectors only"
            )
    if activation not in DENSE_ACTIVATIONS:
        raise CheckpointError(
            f"{folder}/config.json: Dense activation {activation!r} is not supported ({', '.join(DENSE_ACTIVATIONS)})"
        )
    try:
        dense = Dense(
            int(config["in_features"]),
            int(config["out_features"]),
            bool(config.get("bias", True)),
            DENSE_ACTIVATIONS[activation](),
        )
    except KeyError as e:
        raise CheckpointError(f"{folder}/config.json: missing {e}") from None
    from bertkit.hf import check_values, read_state_dict

    state, source = read_state_dict(folder)  # model.safetensors or pytorch_model.bin, errors named
    expected = {k: v.shape for k, v in dense.state_dict().items()}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        raise CheckpointError(f"{folder}: Dense weights {got} do not match its config {expected}")
    check_values(state, list(state), source)
    dense.load_state_dict(state)
    return dense
