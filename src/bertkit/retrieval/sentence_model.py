"""The model that embedding training trains: an encoder, pooling, optional Dense layers and normalisation, as a
sentence-transformers pipeline — read from any folder `bertkit embed` reads and written as a sentence-transformers
folder that `SentenceTransformer(folder)` loads with the same vectors as `bertkit embed` (tests).

The folder written (sentence-transformers' own layout, the one all-MiniLM-L6-v2 ships in):

    config.json, model.safetensors, vocab.txt / tokenizer.json   the encoder, a Hugging Face folder (module 0)
    sentence_bert_config.json                                    max_seq_length, do_lower_case
    1_Pooling/config.json                                        the pooling mode
    2_Dense/config.json + model.safetensors                      each Dense layer the start folder had
    modules.json                                                 Transformer, Pooling, [Dense...], [Normalize]
    config_sentence_transformers.json                            similarity_fn_name: cosine
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from bertkit.config import atomic_write_text
from bertkit.errors import BertkitError
from bertkit.hf import fsync, save_pretrained
from bertkit.use.embed import DENSE_ACTIVATIONS, Embedder, load_embedder, pool

ST_TYPES = "sentence_transformers.models."
POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}


class SentenceModel(nn.Module):
    """An Embedder's pieces as one trainable module: `forward(input_ids, attention_mask)` gives (B, dim) vectors
    (normalised when the folder says so), with gradients. Runs the encoder unpadded, as `embed` does."""

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.encoder = embedder.encoder
        self.dense = nn.ModuleList(embedder.dense)
        self.tokenizer = embedder.tokenizer
        self.pooling = embedder.pooling
        self.normalize = embedder.normalize
        self.max_seq_length = embedder.max_seq_length
        self.do_lower_case = embedder.do_lower_case

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, pooling: str | None = None, normalize: bool | None = None):
        return cls(load_embedder(folder, pooling=pooling, normalize=normalize))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask, unpad=True).last_hidden_state
        vectors = pool(hidden.float(), attention_mask, self.pooling)
        for d in self.dense:
            vectors = d(vectors)
        return nn.functional.normalize(vectors, p=2, dim=-1) if self.normalize else vectors

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Ids as `Embedder.tokenize` makes them: [CLS] … [SEP], cut at max_seq_length."""
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        return self.tokenizer(texts, max_length=self.max_seq_length, padding=False, return_tensors=None)["input_ids"]

    def embedder(self) -> Embedder:
        """The same modules as an Embedder (shared, not copied): `embed`'s fast inference path for evaluation."""
        return Embedder(
            encoder=self.encoder,
            tokenizer=self.tokenizer,
            pooling=self.pooling,
            normalize=self.normalize,
            max_seq_length=self.max_seq_length,
            do_lower_case=self.do_lower_case,
            dense=list(self.dense),
            source="the model being trained",
        )

    def save(self, folder: str | os.PathLike) -> None:
        """Write the sentence-transformers folder: built in FOLDER.tmp, then renamed into place, so a failure
        never leaves half a folder over a good one."""
        from safetensors.torch import save_file

        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_pretrained(tmp, self.encoder, tokenizer=self.tokenizer)
        write_json(
            tmp / "sentence_bert_config.json",
            {"max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case},
        )
        modules = [_module(0, "", "Transformer"), _module(1, "1_Pooling", "Pooling")]
        pooling = {"word_embedding_dimension": self.encoder.config.hidden_size}
        pooling |= {key: mode == self.pooling for mode, key in POOLING_KEYS.items()}
        pooling |= {"pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True}
        write_json(tmp / "1_Pooling" / "config.json", pooling)
        for d in self.dense:
            idx = len(modules)
            path = f"{idx}_Dense"
            activation = type(d.activation).__name__
            if activation not in DENSE_ACTIVATIONS:
                raise BertkitError(f"a Dense layer with activation {activation} cannot be saved")
            linear = d.linear
            write_json(
                tmp / path / "config.json",
                {
                    "in_features": linear.in_features,
                    "out_features": linear.out_features,
                    "bias": linear.bias is not None,
                    "activation_function": f"torch.nn.modules.activation.{activation}",
                },
            )
            save_file({k: v.detach().contiguous() for k, v in d.state_dict().items()}, tmp / path / "model.safetensors")
            modules.append(_module(idx, path, "Dense"))
        if self.normalize:
            modules.append(_module(len(modules), f"{len(modules)}_Normalize", "Normalize"))
        write_json(tmp / "modules.json", modules)
        write_json(
            tmp / "config_sentence_transformers.json",
            {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"},
        )
        for p in tmp.rglob("*"):
            if p.is_file():
                fsync(p)
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)


def _module(idx: int, path: str, kind: str) -> dict:
    return {"idx": idx, "name": str(idx), "path": path, "type": ST_TYPES + kind}


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
