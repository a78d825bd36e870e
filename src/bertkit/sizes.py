"""Parameter counts by component (`bertkit inspect`'s table, the notes' exercise of counting BERT-base's 110M)."""

from __future__ import annotations

import re

from torch import nn


def parameter_table(modules: dict[str, nn.Module]) -> list[tuple[str, int]]:
    """Parameter counts by component, the notes' exercise: [("embeddings: word", 23440896), ...].

    Layers are identical, so each layer component is one row "N × ..." with the count for all N layers; an
    ALBERT's one shared layer is "1 × ... (shared by N)" and counted once, as it is stored once.
    The MLM decoder is tied to the word embeddings and so is not counted twice.
    """
    names = {
        "embeddings.word_embeddings": "embeddings: word (V × H)",
        "embeddings.position_embeddings": "embeddings: position (P × H)",
        "embeddings.token_type_embeddings": "embeddings: segment (2 × H)",
        "embeddings.norm": "embeddings: LayerNorm",
        "final_norm": "final LayerNorm (pre-norm)",
        "project": "embeddings: projection E → H",
        "attn": "attention: Q, K, V, output",
        "attn_norm": "attention: LayerNorm",
        "ffn": "FFN: H → 4H → H",
        "ffn_norm": "FFN: LayerNorm",
        "pooler": "pooler (tanh on [CLS])",
    }
    rows: dict[str, int] = {}
    for module_name, module in modules.items():
        n_layers = len(getattr(module, "layers", ()))
        depth = getattr(getattr(module, "config", None), "num_hidden_layers", n_layers)
        shared = f" (shared by {depth})" if n_layers != depth else ""
        for pname, p in module.named_parameters():
            if module_name != "encoder":
                key = f"head: {module_name}"
            elif m := re.match(r"layers\.\d+\.(\w+)\.", pname):
                key = f"{n_layers} × {names[m.group(1)]}{shared}"
            elif pname.startswith("embeddings.extra_embeddings."):
                key = f"embeddings: {pname.split('.')[2]} (n × H)"
            else:
                key = pname.rsplit(".", 1)[0]
                key = names[key] if key in names else names["pooler"]
            if getattr(module, "project", None) is not None and key.startswith("embeddings: "):
                key = key.replace("× H)", "× E)")  # factorised: the tables are E wide
            rows[key] = rows.get(key, 0) + p.numel()
    return list(rows.items())
