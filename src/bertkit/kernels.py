"""CPU kernels the encoder runs through, each with what it was measured to buy: a faster dropout mask, a LayerNorm
that keeps the residual stream in bf16 under autocast, and attention as batched matrix multiplies where that
beats the fused kernel. Each gives the numbers of its plain PyTorch counterpart (the tests check it); model.py
uses them and stays the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _CpuDropout(torch.autograd.Function):
    """Dropout whose keep-mask comes from 16-bit slices of 64-bit random words: one generator call per four
    elements. `F.dropout` on CPU draws a Bernoulli sample per element from the serial Mersenne Twister; with
    BERT's 0.1 that was 28% of a bf16 pretraining step (4 x 256, 32 x 128: 13 masks, 94 ms of 330). Forward +
    backward of one mask: 2.7 ms against 6.6 for 32 x 128 x 256 in bf16, 5.3 against 13.3 for the attention
    probabilities (32 x 4 x 128 x 128). The drop probability is p rounded to a multiple of 1/65,536 (0.1 ->
    0.099991), kept scaled by the exact 1 / (1 - p'), so the expectation is unchanged; the same seed gives the
    same masks (the default generator, as F.dropout)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        n, dropped = x.numel(), round(p * 65536)
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        draws = words.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
        mask = (draws >= dropped - 32768).to(x.dtype).mul_(65536 / (65536 - dropped))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, with the faster mask of `_CpuDropout` on CPU."""
    if not training or p == 0:
        return x
    if x.device.type == "cpu" and round(p * 65536) < 65536:  # p that rounds to 1 drops everything: F.dropout
        return _CpuDropout.apply(x, p)
    return F.dropout(x, p, True)


class Dropout(nn.Dropout):
    """nn.Dropout through `dropout` (the faster CPU mask)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters and state-dict keys) that keeps the residual stream in bf16 under bf16
    autocast. Autocast runs LayerNorm in fp32 and returns fp32, so every sub-layer's input was cast back to bf16
    for its matrix multiply and every residual add ran in fp32: dtype copies that were the largest non-matmul
    cost of a bf16 training step. Here the statistics are still computed in fp32 (the kernels accumulate in fp32
    for bf16 input), and the output is rounded to bf16 once. Post-LN BERT renormalises the stream after every
    sub-layer, so the rounding does not accumulate with depth. Measured (AVX-512 BF16 / AMX, 2 cores, one process,
    alternating): a pretraining step +10% tokens/s on 4 x 256 at 32 x 128, +7% on 2 x 128 at 64 x 32 and 8 x 256;
    the gradient's relative error to fp32 1.3% against autocast's 0.7% (4 x 256, 16 x 128; tested), and the
    demo's recipe for 3,000 steps reached the same held-out accuracy (10.8% against 10.2% at step 2,000).
    Outside bf16 autocast it is nn.LayerNorm exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
            with torch.autocast(device, enabled=False):
                y = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
            return y.to(torch.bfloat16)
        return super().forward(x)


# On CPU in bf16, attention as batched matrix multiplies (`_bmm_attention`) beats the fused SDPA kernel on short
# sequences (2 cores, AMX, measured): in inference up to ~24 tokens, where SDPA's per-(sequence, head) overhead
# dominates tiny blocks (256 texts x 12 heads x 12 tokens: 2.7 ms against 5.8; from 34 tokens on SDPA ties or
# wins); in training at every length BERT uses, since the CPU flash kernel's backward is slow. Forward +
# backward, with the softmax in bf16 (the CPU kernel accumulates in fp32; gradients as close to an fp32
# reference as with an fp32 softmax): 32 x 4 heads x 128 x 64 4.1 ms against SDPA's 22; 8 x 4 x 256 3.2 against
# 7.5; 16 x 12 x 128 5.9 against 32; 4 x 12 x 512 a tie (29-31 against 30). The (B, heads, T, T) probabilities
# it keeps for the backward are what the flash kernel saves memory on: 200 MB a layer for BERT-base at 32 x 512,
# so training takes the batched matmuls only while they hold at most BMM_TRAINING_MAX_SCORES of them (64 MB a
# layer in bf16: every shape of the recipes and benchmarks in docs/, not BERT-base at 32 x 512).
BMM_ATTENTION_MAX = {"inference": 24, "training": 512}
BMM_TRAINING_MAX_SCORES = 32 * 2**20


def bmm_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout_p: float = 0.0
) -> torch.Tensor:
    """softmax(QKᵀ/√d + mask)V by (B·heads) batched matrix multiplies, the softmax in the inputs' dtype;
    `mask` (B, 1, 1|T, T), True = attend; dropout on the probabilities as BERT's."""
    B, h, T, d = q.shape
    q = q * (1 / math.sqrt(d))  # scaled before the product: T·d multiplies instead of T·T
    scores = torch.bmm(q.reshape(B * h, T, d), k.reshape(B * h, T, d).transpose(1, 2)).view(B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(-1)
    if dropout_p:
        probs = dropout(probs, dropout_p, True)
    return torch.bmm(probs.view(B * h, T, T), v.reshape(B * h, T, d)).view(B, h, T, d)


def bmm_pays(training: bool, batch_size: int, num_heads: int, seq_len: int) -> bool:
    """Whether CPU bf16 (or fp32 with dropout) attention runs as `bmm_attention` (see BMM_ATTENTION_MAX)."""
    if not (training and torch.is_grad_enabled()):
        return seq_len <= BMM_ATTENTION_MAX["inference"]
    within = batch_size * num_heads * seq_len * seq_len <= BMM_TRAINING_MAX_SCORES
    return seq_len <= BMM_ATTENTION_MAX["training"] and within


def causal_mask(t_q: int, t_k: int, device: torch.device | None = None) -> torch.Tensor:
    """(T_q, T_k) True where query i may attend key j <= i: left to right (GPT's language model). With fewer
    queries than keys the queries are the last T_q positions (after cached keys): query i is position
    T_k - T_q + i."""
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(t_k - t_q)


def merge_masks(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Both masks at once: boolean AND of two boolean masks, else the sum of their additive forms."""
    if a is None or b is None:
        return b if a is None else a
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    dtype = a.dtype if a.is_floating_point() else b.dtype
    additive = [
        m if m.is_floating_point() else torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill_(~m, -math.inf)
        for m in (a, b)
    ]
    return additive[0] + additive[1]


# In CPU inference the encoder's linear layers run through oneDNN's linear with the activation fused into it
# (`torch.ops.mkldnn._linear_pointwise`, the kernel torch.compile's CPU backend emits) instead of `F.linear`,
# which in fp32 calls the BLAS torch was built with (MKL): see docs/performance.md for what it was measured to
# buy. Training (autograd), autocast and tensors off the CPU keep F.linear. `ONEDNN_LINEAR = False` turns it off
# (the benchmarks compare both). On by the CPU kind it was measured to pay on: with AVX-512 (+8-31% fp32
# embedding on an AMD EPYC); with AVX2 alone MKL was the faster (oneDNN 0.85-1.04x F.linear per length bucket,
# 5 alternating rounds, on an AMD EPYC), so there, and where torch reports neither, it stays off.
ONEDNN_LINEAR = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
_ONEDNN_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()  # AVX2: no
_ONEDNN_ACTIVATIONS = {
    "none": ("none", ""),
    "gelu": ("gelu", "none"),
    "gelu_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""),
}


def _onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        ONEDNN_LINEAR
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == weight.dtype
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _ONEDNN_BF16))
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and not torch.jit.is_tracing()  # an exported graph (ONNX) has no oneDNN ops: it gets F.linear
    )


def activation_name(act: nn.Module) -> str | None:
    """The oneDNN name of an activation module it can fuse, else None."""
    if type(act) is nn.GELU:
        return "gelu" if act.approximate == "none" else "gelu_tanh"
    return "relu" if type(act) is nn.ReLU else None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none") -> torch.Tensor:
    """activation(x Wᵀ + b) for activation "none", "gelu", "gelu_tanh" or "relu"; fused by oneDNN in CPU
    inference, else F.linear and the activation."""
    if _onednn(x, weight):
        attr, algorithm = _ONEDNN_ACTIVATIONS[activation]
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm)
    y = F.linear(x, weight, bias)
    if activation == "none":
        return y
    if activation == "relu":
        return F.relu(y)
    return F.gelu(y, approximate="tanh" if activation == "gelu_tanh" else "none")


def plain_linear(module: nn.Module) -> bool:
    """An nn.Linear as it is (not a quantised or wrapped one) with no hooks: its weights may be used directly."""
    return type(module) is nn.Linear and not (module._forward_hooks or module._forward_pre_hooks)


def linear_add(x: torch.Tensor, linear_module: nn.Module, residual: torch.Tensor) -> torch.Tensor:
    """linear_module(x) + residual; one oneDNN call with the add fused in CPU inference."""
    if plain_linear(linear_module) and _onednn(x, linear_module.weight) and residual.dtype == x.dtype:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, linear_module.weight, linear_module.bias, "add")
    return linear_module(x) + residual
