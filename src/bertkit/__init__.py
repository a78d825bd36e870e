"""bertkit: pretrain, adapt, fine-tune and serve BERT-family text encoders.

The top-level names are for the habits of people who come from `transformers` and sentence-transformers:

    import bertkit
    ckpt = bertkit.load("path/to/bert-folder")            # a Checkpoint: config, encoder, heads, tokenizer
    tok = bertkit.Tokenizer.from_folder("path/to/bert-folder")   # any family: WordPiece or RoBERTa BPE
    emb = bertkit.load_embedder("path/to/all-MiniLM-L6-v2")
    vectors = emb.encode(["我喜欢吃苹果", "hello"])

They are imported lazily, on first use, so `import bertkit` loads neither torch nor tokenizers (the CLI's
`--help` and the test that checks the package's import arrows rely on this). The rooms keep their own entry
points: `bertkit.pretrain.loop.pretrain`, `bertkit.finetune.loop.finetune`, `bertkit.use.serve.serve`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> (module, attribute)
_API = {
    "load": ("bertkit.hf", "load_pretrained"),
    "save": ("bertkit.hf", "save_pretrained"),
    "Checkpoint": ("bertkit.hf", "Checkpoint"),
    "BertConfig": ("bertkit.config", "BertConfig"),
    "from_preset": ("bertkit.config", "from_preset"),
    "BertEncoder": ("bertkit.model", "BertEncoder"),
    "Tokenizer": ("bertkit.vocab", "Tokenizer"),  # through vocab: it imports every family (BPE too)
    "Embedder": ("bertkit.use.embed", "Embedder"),
    "load_embedder": ("bertkit.use.embed", "load_embedder"),
    "fill_mask": ("bertkit.use.fill_mask", "fill_mask"),
    "BertkitError": ("bertkit.errors", "BertkitError"),
}
__all__ = [  # the keys of _API (a test checks they agree)
    "load",
    "save",
    "Checkpoint",
    "BertConfig",
    "from_preset",
    "BertEncoder",
    "Tokenizer",
    "Embedder",
    "load_embedder",
    "fill_mask",
    "BertkitError",
    "__version__",
]

if TYPE_CHECKING:  # for type checkers and editors; at run time the names resolve in __getattr__
    from bertkit.config import BertConfig, from_preset
    from bertkit.errors import BertkitError
    from bertkit.hf import Checkpoint
    from bertkit.hf import load_pretrained as load
    from bertkit.hf import save_pretrained as save
    from bertkit.model import BertEncoder
    from bertkit.use.embed import Embedder, load_embedder
    from bertkit.use.fill_mask import fill_mask
    from bertkit.vocab import Tokenizer


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'bertkit' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
