"""`bertkit export --onnx`: the encoder as an ONNX graph, checked against PyTorch with onnxruntime.

    sentence-transformers folder:  input_ids, attention_mask (B, T)  ->  sentence_embedding (B, D)
                                   (encoder, pooling, Dense and Normalize: what `Embedder.encode` gives)
    BERT folder:                   input_ids, attention_mask, token_type_ids (B, T)
                                   ->  last_hidden_state (B, T, H) [, pooler_output (B, H)]

Choices:
- The TorchScript exporter (`dynamo=False`): it traces model.py as it is and needs nothing beyond torch.
  torch's newer exporter needs the `onnxscript` package and cannot follow the encoder's one data-dependent
  branch ("skip the mask when nothing is padded") without a rewrite of model.py.
- Tracing records the branch its example takes, so the example batch holds two texts of different lengths:
  the graph always applies `attention_mask`, which for a batch without padding changes nothing. The tracer's
  warnings about that branch are silenced for this reason; the check below runs other batch sizes and lengths
  to show the graph generalises.
- Batch and sequence axes are dynamic. Sequences are limited by the position embeddings (512 for BERT); the
  ONNX graph does not truncate, so the tokenizer must: `max_seq_length` is stored in the file's metadata
  with the pooling settings. The graph runs on padded batches (onnxruntime has no unpadding).
- The check compares onnxruntime's outputs with bertkit's on batches of 1, 3 and 8 texts of different
  lengths, one of them past max_seq_length (and, for BERT folders, a batch of text pairs). The reference
  for sentence vectors is `Embedder.encode` itself; for hidden states the encoder on the same padded batch.
  The largest difference is printed and must be at most `tolerance` (1e-4).
- The file is written next to its destination under a temporary name, checked there, and moved into place
  only when the check passes: an existing export is never replaced by a broken or half-written one.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertkit.errors import BertkitError
from bertkit.hf import load_pretrained
from bertkit.model import BertEncoder
from bertkit.use.embed import Embedder, load_embedder, pad_batch, pool

TOLERANCE = 1e-4
CHECK_TEXTS = [
    "Hello world.",
    "我喜欢吃苹果",
    "The quick brown fox jumps over the lazy dog, twice, and then sits down in the shade.",
    "a",
    "Café naïve — résumé déjà vu! 🤗",
    "苹果和华为哪个牌子好？ Which brand is better, Apple or Huawei?",
    "word " * 600,  # longer than any max_seq_length: truncated by the tokenizer
    "Short one.",
]
CHECK_BATCHES = [[0], [1, 2, 3], list(range(8))]  # batch sizes 1, 3 and 8; lengths vary within each


class SentenceEmbedding(nn.Module):
    """(input_ids, attention_mask) -> sentence vectors, as `Embedder.encode` computes them (fp32)."""

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.encoder = embedder.encoder
        self.dense = nn.ModuleList(embedder.dense)
        self.pooling, self.normalize = embedder.pooling, embedder.normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask).last_hidden_state  # (B, T, H)
        vectors = pool(hidden, attention_mask, self.pooling)  # (B, H)
        for d in self.dense:
            vectors = d(vectors)
        return F.normalize(vectors, p=2, dim=-1) if self.normalize else vectors  # (B, D)


class HiddenStates(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> last_hidden_state (B, T, H) [, pooler_output (B, H)]."""

    def __init__(self, encoder: BertEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        out = self.encoder(input_ids, attention_mask, token_type_ids)
        return (out.last_hidden_state,) if out.pooler_output is None else (out.last_hidden_state, out.pooler_output)


@dataclass
class Exported:
    """What `export_onnx` wrote and how close onnxruntime came to PyTorch."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    max_diff: float  # max abs difference over every check batch and output
    diffs: list[tuple[str, float]]  # (batch description, max abs difference)


def export_onnx(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    opset: int = 17,
    tolerance: float = TOLERANCE,
    verbose: bool = True,
) -> Exported:
    """Export `folder` to `out` (.onnx) and check it; see the module docstring."""
    out = Path(out)
    if out.is_dir():
        raise BertkitError(f"--onnx {out} is a folder; give a file path")
    if out.suffix != ".onnx":
        raise BertkitError(f"{out}: the output must end in .onnx")
    if not out.parent.is_dir():
        raise BertkitError(f"{out.parent}: no such folder for the output")
    if not 14 <= opset <= 20:  # scaled_dot_product_attention needs 14; 20 is the newest this exporter writes
        raise BertkitError(f"--opset must be in 14..20, got {opset}")
    folder = Path(folder)
    sentence = (folder / "modules.json").is_file()
    if sentence:
        embedder = load_embedder(folder)
        module, max_len = SentenceEmbedding(embedder), embedder.max_seq_length
        tokenizer, do_lower_case = embedder.tokenizer, embedder.do_lower_case
        inputs, outputs = ["input_ids", "attention_mask"], ["sentence_embedding"]
        shapes: dict[str, list[str | int]] = {"sentence_embedding": ["batch", embedder.dim]}
        metadata = {"pooling": embedder.pooling, "normalize": str(embedder.normalize).lower()}
    else:
        embedder = None
        ckpt = load_pretrained(folder)
        if ckpt.tokenizer is None:
            raise BertkitError(f"{folder}: no vocab.txt or tokenizer.json; the check needs the tokenizer")
        module, tokenizer, do_lower_case = HiddenStates(ckpt.encoder), ckpt.tokenizer, False
        max_len = min(tokenizer.model_max_length, ckpt.config.max_length)
        inputs = ["input_ids", "attention_mask", "token_type_ids"]
        if ckpt.config.type_vocab_size <= 1:  # RoBERTa: one token type, DistilBERT none: the graph has no such input
            inputs = inputs[:2]
        outputs = ["last_hidden_state"] + (["pooler_output"] if ckpt.encoder.pooler is not None else [])
        H = ckpt.config.hidden_size
        shapes = {"last_hidden_state": ["batch", "sequence", H], "pooler_output": ["batch", H]}
        metadata = {}
    module.eval()
    metadata |= {"max_seq_length": str(max_len), "do_lower_case": str(do_lower_case).lower(), "source": str(folder)}

    def batch(texts: list[str], pairs: list[str] | None = None) -> dict[str, torch.Tensor]:
        if do_lower_case:
            texts = [t.lower() for t in texts]
        enc = tokenizer(texts, pairs, max_length=max_len, padding=False, return_tensors=None)
        input_ids, attention_mask = pad_batch(enc["input_ids"], tokenizer.pad_token_id)
        token_type_ids, _ = pad_batch(enc["token_type_ids"], 0)
        x = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return {k: x[k] for k in inputs}

    example = batch(["Hello world, a longer first text.", "Hi"])
    if bool(example["attention_mask"].all()):  # the trace would leave attention_mask out: see the module docstring
        raise RuntimeError("the example batch for tracing must hold padding")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _trace(module, example, tmp, inputs, outputs, opset)
        _finish(tmp, shapes, metadata)
        cases = []
        for idx in CHECK_BATCHES:
            texts = [CHECK_TEXTS[i] for i in idx]
            x = batch(texts)
            name = f"{len(idx)} text(s) × {x['input_ids'].shape[1]} tokens"
            cases.append((name, x, _reference(module, embedder, texts, x)))
        if not sentence:
            x = batch(CHECK_TEXTS[:4], CHECK_TEXTS[4:])
            cases.append((f"4 pairs × {x['input_ids'].shape[1]} tokens", x, _reference(module, None, [], x)))
        diffs = check_onnx(tmp, cases)
        worst = max(d for _, d in diffs)
        if verbose:
            for name, d in diffs:
                print(f"check: {name}: max abs diff {d:.2e}")
        if not worst <= tolerance:
            raise BertkitError(
                f"onnxruntime differs from PyTorch by {worst:.2e} (more than {tolerance:.0e}); {out} not written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    if verbose:
        size = out.stat().st_size / 1e6
        print(
            f"wrote {out} ({size:.1f} MB, opset {opset}): {', '.join(inputs)} -> {', '.join(outputs)}; "
            f"onnxruntime vs PyTorch max abs diff {worst:.2e} <= {tolerance:.0e}"
        )
    return Exported(out, inputs, outputs, worst, diffs)


def _trace(module: nn.Module, example: dict, path: Path, inputs: list[str], outputs: list[str], opset: int) -> None:
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes |= {name: {0: "batch", 1: "sequence"} if name == "last_hidden_state" else {0: "batch"} for name in outputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the mask branch: see the module docstring
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
        torch.onnx.export(
            module,
            tuple(example[k] for k in inputs),
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def _finish(path: Path, shapes: dict[str, list[str | int]], metadata: dict[str, str]) -> None:
    """Name the output shapes (the tracer leaves the vector width as a made-up symbol), store the tokenisation
    and pooling settings as metadata, and validate the graph with onnx's checker."""
    import onnx

    model = onnx.load(str(path))
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, size in zip(dims, shapes[output.name], strict=True):
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size
    onnx.checker.check_model(model, full_check=True)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"bertkit.{key}", value
    onnx.save(model, str(path))


@torch.no_grad()
def _reference(module: nn.Module, embedder: Embedder | None, texts: list[str], x: dict) -> list[np.ndarray]:
    """PyTorch's outputs: `Embedder.encode` (unpadded, as bertkit embeds) for sentence vectors, else the
    encoder on the same padded batch."""
    if embedder is not None:
        return [embedder.encode(texts)]
    return [o.numpy() for o in module(**x)]


def check_onnx(path: Path, cases: list[tuple[str, dict, list[np.ndarray]]]) -> list[tuple[str, float]]:
    """(name, max abs difference) per case, between onnxruntime's outputs for its inputs and the reference."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = []
    for name, x, expected in cases:
        got = session.run(None, {k: v.numpy() for k, v in x.items()})
        diffs.append((name, max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))))
    return diffs
