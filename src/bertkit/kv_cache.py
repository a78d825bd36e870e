"""The state a causal model keeps between generation steps: every layer's keys and values so far (`KVCache`), which
`BertEncoder.forward(..., cache=...)` reads and extends, so each new token runs one position through the layers."""

from __future__ import annotations

import torch


class LayerCache:
    """One layer's keys and values of the positions run so far, (B, heads, T_past, d_k) each."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add these positions' keys and values; returns all of them, the past first."""
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return k, v


class KVCache:
    """Every layer's `LayerCache` and how many positions they hold: a causal model's state between generation
    steps, so each new token costs one position's work instead of the whole sequence's."""

    def __init__(self, num_layers: int) -> None:
        self.layers = [LayerCache() for _ in range(num_layers)]
        self.length = 0
