"""Shared test helpers (importable from any test module: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertkit.config import BertConfig
from bertkit.hf import save_pretrained
from bertkit.model import BertEncoder


def tiny_config(vocab_size: int, max_position_embeddings: int = 64) -> BertConfig:
    """A 2-layer, 32-wide BERT config: big enough to learn a toy task in seconds on one thread."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
    )


def save_tiny_bert(folder: Path, tokenizer, max_position_embeddings: int = 64, seed: int = 0) -> Path:
    """A random `tiny_config` encoder (with pooler, no heads) and its tokenizer, saved as an HF folder."""
    torch.manual_seed(seed)
    save_pretrained(folder, BertEncoder(tiny_config(tokenizer.vocab_size, max_position_embeddings)), {}, tokenizer)
    return folder


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Import into a test module to run it on one thread: tiny models on a shared 2-core machine lose more to
    thread synchronisation than a second thread gains (10x slower matrix multiplies under load were measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
