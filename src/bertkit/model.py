"""The BERT encoder, in reading order, and the tiny heads that sit on it.

    input_ids ─► token + segment + position embeddings ─► LayerNorm ─► dropout
              ─► N × [ self-attention ─► add & LayerNorm ─► FFN (H→4H, GELU, 4H→H) ─► add & LayerNorm ]
              ─► last_hidden_state (B, T, H) ─► tanh pooler on [CLS] ─► pooler_output (B, H)

Choices:
- Attention is `softmax(QKᵀ/√d_k)V` through `F.scaled_dot_product_attention` (fused kernels on CPU and GPU);
  only when attention probabilities are asked for (attention maps, TinyBERT) is it computed by hand.
  Q, K and V come from one (H → 3H) matrix multiply over the three weights concatenated: one large GEMM
  runs faster than three small ones on CPU.
- `unpad=True` removes padding: embeddings are looked up for (B, T), then every linear layer, LayerNorm and
  the FFN run on the N real tokens only, (N, H); attention alone scatters them back into (B, T) rows. Work
  follows real tokens, whatever the lengths in a batch. Outputs come back padded, with zeros at padding.
  Off by default, so that padded positions hold what transformers computes there: heads that score every
  position (QA, tagging) and their parity tests see the same numbers.
- Post-LayerNorm, exactly as the original BERT, so Google / Hugging Face weights give the same numbers.
- Heads are tiny modules that take hidden states; objectives (objectives.py) wrap an encoder and heads.
  The MLM decoder is tied to the word embeddings: the head receives that matrix instead of owning a copy.
- Module names are our own and short; hf.py maps them to Hugging Face names in both directions.
- The family is this one encoder with small deltas read from the config's family row (`config.family`):
  ALBERT's factorised embedding (tables E wide, `project` E → H) and one shared layer (`layers` holds the
  distinct layers, `layer_at(i)` the one run at depth i; gradients from every use add up in the one set of
  weights); RoBERTa's position ids from `pad_token_id + 1`, counted over non-padding tokens as fairseq does;
  ELECTRA's projection when E != H and no pooler. The MLM head decodes in E against the E-wide word
  embeddings, so ALBERT and ELECTRA tie their decoders as BERT does.
- The encoder is open for the families to come, each option off by default and the default path unchanged
  (BERT's padding mask, SDPA or the CPU kernels of kernels.py):
  * attention takes an explicit mask, boolean (True = may attend) or additive float, broadcastable to
    (B, heads, T_q, T_k), and/or `is_causal` (GPT-2), merged with the padding mask;
  * a second, query-only stream (XLNet's two-stream attention): the query stream g queries, the content
    stream h gives keys and values, with its own mask, through the same layer weights;
  * attention scores (the softmax's input, masked entries at the dtype's minimum: what TinyBERT matches)
    and/or probabilities, computed by hand only when asked for;
  * `type_vocab_size = 0`: no token-type table; `extra_embeddings`: more tables added like token types, by
    name (ERNIE 2.0's task type);
  * `norm_position = "pre"`: LayerNorm before each sub-layer and once after the last layer, none on the
    embeddings (GPT-2's layout; Megatron's BERT too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertkit import kernels
from bertkit.config import BertConfig
from bertkit.kernels import Dropout, LayerNorm, causal_mask, dropout, merge_masks  # noqa: F401 - re-exported
from bertkit.kv_cache import KVCache, LayerCache  # noqa: F401 - KVCache importable from here as well

ACT2FN = {
    "gelu": nn.GELU(),  # exact erf GELU, as Google's BERT
    "gelu_new": nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": nn.GELU(approximate="tanh"),
    "relu": nn.ReLU(),
    "tanh": nn.Tanh(),  # RoBERTa's first-token classifier
}


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor | None  # (B, H); None when the encoder has no pooler
    hidden_states: tuple[torch.Tensor, ...] | None = None  # N+1 × (B, T, H): embeddings, then each layer
    attentions: tuple[torch.Tensor, ...] | None = None  # N × (B, heads, T, T) attention probabilities
    scores: tuple[torch.Tensor, ...] | None = None  # N × (B, heads, T, T) the softmax's inputs, masked
    query_state: torch.Tensor | None = None  # (B, T, H) the query stream's last layer (two-stream attention)


@dataclass
class Unpadding:
    """Where the real tokens of a padded (B, T) batch are, to move between (B, T, D) and (N, D)."""

    index: torch.Tensor  # (N,) flat positions b * T + t of the real tokens
    batch_size: int
    seq_len: int

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> Unpadding:
        B, T = attention_mask.shape
        return cls(attention_mask.flatten().nonzero().squeeze(1), B, T)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (N, D)
        return x.reshape(-1, x.shape[-1])[self.index]

    def pad(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) -> (B, T, D), zeros at padding
        out = x.new_zeros(self.batch_size * self.seq_len, x.shape[-1])
        return out.index_copy_(0, self.index, x).view(self.batch_size, self.seq_len, -1)


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        E = config.embedding_width
        # GPT-2 has no padding token: its table has no padding row (a folder padding with end-of-text trains it).
        word_pad = config.pad_token_id if config.family.word_padding_row else None
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=word_pad)
        # RoBERTa's table has a (never used) row for the padding id, as fairseq's; BERT's has none.
        pos_pad = config.pad_token_id if config.family.position_padding_row else None
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E, padding_idx=pos_pad)
        # None when type_vocab_size = 0 (DistilBERT, GPT-2): token_type_ids given are then ignored, as a model
        # with one type reads them all as type 0.
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E) if config.type_vocab_size else None
        self.extra_embeddings = (
            nn.ModuleDict({name: nn.Embedding(rows, E) for name, rows in config.extra_embeddings.items()})
            if config.extra_embeddings
            else None
        )
        # Pre-LayerNorm stacks normalise at the first layer instead.
        self.norm = LayerNorm(E, eps=config.layer_norm_eps) if config.norm_position == "post" else None
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.pad_token_id = config.pad_token_id
        self.position_offset = config.position_offset
        self.single_type = config.type_vocab_size == 1

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,  # (B, T); None: 0..T-1 for every row
        extra_ids: dict[str, torch.Tensor] | None = None,  # {table name: (B, T) ids}; a table not given: row 0
    ) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # (B, T, E)
        if position_ids is None and self.position_offset:
            # RoBERTa: real tokens are numbered pad+1, pad+2, ... and padding gets the padding id itself.
            real = input_ids.ne(self.pad_token_id).long()  # long, not bool: ONNX's CumSum takes no bools
            position_ids = torch.cumsum(real, dim=1) * real + self.pad_token_id
        if position_ids is None:
            x = x + self.position_embeddings.weight[:T]  # (T, E) broadcast over the batch
        else:
            x = x + self.position_embeddings(position_ids)  # (B, T, E)
        if self.token_type_embeddings is not None:
            if token_type_ids is None or self.single_type:  # one token type (RoBERTa): every token is type 0
                x = x + self.token_type_embeddings.weight[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        if self.extra_embeddings is not None or extra_ids:
            x = x + self._extra(extra_ids or {})
        return self.dropout(x if self.norm is None else self.norm(x))

    def _extra(self, extra_ids: dict[str, torch.Tensor]) -> torch.Tensor:
        """The extra tables' rows summed, (B, T, E) or (E,); like token types, a table without ids adds row 0."""
        tables = self.extra_embeddings or {}
        unknown = sorted(set(extra_ids) - set(tables))
        if unknown:
            raise ValueError(f"extra_ids names {unknown}; the config's extra_embeddings has {sorted(tables) or 'none'}")
        return sum(t(extra_ids[n]) if n in extra_ids else t.weight[0] for n, t in tables.items())


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)
        self.out = nn.Linear(H, H)
        self.dropout_p = config.attention_probs_dropout_prob
        self._fused: tuple | None = None  # (weights' identity, fused Q|K|V weight, bias) for inference

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        need_weights: bool = False,
        unpadding: Unpadding | None = None,
        *,
        is_causal: bool = False,
        query: torch.Tensor | None = None,
        need_scores: bool = False,
        cache: LayerCache | None = None,
        residual: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x: (B, T, H), or (N, H) with `unpadding`. `mask`: bool (True = may attend) or additive float,
        broadcastable to (B, heads, T_q, T_k). `query`: (B, T_q, H), a second stream whose queries attend to
        x's keys and values (two-stream attention); the output is then that stream's, (B, T_q, H). `cache`: the
        keys and values of the positions before x (generation); x's are appended to it and attended with them.
        `residual`: added to the output (in inference, inside the output projection's kernel).
        Returns (output, scores or None, probabilities or None)."""
        if query is None:
            qkv = self.qkv(x)  # (B, T, 3H), or (N, 3H) for unpadded tokens
            if unpadding is not None:
                qkv = unpadding.pad(qkv)  # attention needs each sequence as a row: (B, T, 3H)
            B, T, H = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
            # (B, T, 3H) -> 3 × (B, heads, T, d_k): each head attends in its own d_k = H / heads subspace.
            q, k, v = qkv.view(B, T, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, heads, T_past + T, d_k)
        else:
            if unpadding is not None:
                raise ValueError("two-stream attention runs on padded (B, T, H) streams; call it without unpad")
            B, T, H = query.shape
            q, k, v = (self._split_heads(p(s)) for p, s in ((self.query, query), (self.key, x), (self.value, x)))
        dropout_p = self.dropout_p if self.training else 0.0
        y, scores, probs = attend(q, k, v, mask, dropout_p, self.training, is_causal, need_scores, need_weights)
        y = y.transpose(1, 2).reshape(B, T, H)  # heads concatenated back: (B, T, H)
        if unpadding is not None:
            y = unpadding.unpad(y)  # (N, H)
        return (self.out(y) if residual is None else kernels.linear_add(y, self.out, residual)), scores, probs

    def train(self, mode: bool = True):
        # The fused copy is dropped at every switch (an evaluation inside training calls eval(), then train()):
        # the optimizer's fused in-place updates did not always bump the weights' versions, so held-out
        # evaluation during pretraining ran on the Q|K|V of the first evaluation.
        self._fused = None
        return super().train(mode)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, heads, T, d_k)
        return x.view(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)

    def qkv(self, x: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., 3H): Q, K, V side by side, from one matrix multiply."""
        projections = (self.query, self.key, self.value)
        if not all(isinstance(p, nn.Linear) for p in projections):  # e.g. int8-quantised projections
            return torch.cat([p(x) for p in projections], dim=-1)
        if torch.is_grad_enabled():
            weight = torch.cat([p.weight for p in projections])  # (3H, H); the copy costs far less than it saves
            return F.linear(x, weight, torch.cat([p.bias for p in projections]))
        # Inference: the fused copy is kept until a weight changes (an in-place update bumps its version). A copy
        # per call cost 14% of a generated token of GPT-2 small (one position: the copy is most of the work).
        key = tuple((t.data_ptr(), t._version) for p in projections for t in (p.weight, p.bias))
        if self._fused is None or self._fused[0] != key:
            fused = (torch.cat([p.weight for p in projections]), torch.cat([p.bias for p in projections]))
            self._fused = (key, *fused)
        return kernels.linear(x, self._fused[1], self._fused[2])


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float,
    training: bool,
    is_causal: bool = False,
    need_scores: bool = False,
    need_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """softmax(QKᵀ/√d_k + mask)V for (B, heads, T_q, d_k) queries and (B, heads, T_k, d_k) keys and values.

    By hand when scores or probabilities are asked for (a boolean mask's masked entries set to the dtype's
    minimum, as transformers' eager attention; an additive mask added); otherwise SDPA, or on CPU the batched
    matrix multiplies of kernels.py where they were measured faster (a boolean or no mask, one stream)."""
    if is_causal and q.shape[-2] == 1:  # one query after cached keys (generation): it is the last, sees them all
        is_causal = False
    # SDPA takes a mask or is_causal, not both, and its is_causal is aligned top-left: queries after cached keys
    # (generation) need the mask aligned bottom-right
    if is_causal and (mask is not None or need_scores or need_probs or q.shape[-2] != k.shape[-2]):
        mask, is_causal = merge_masks(mask, causal_mask(q.shape[-2], k.shape[-2], q.device)), False
    if need_scores or need_probs:
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, T_q, T_k)
        if mask is not None and mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        elif mask is not None:
            scores = scores + mask
        probs = scores.softmax(dim=-1)
        y = dropout(probs, dropout_p, training) @ v
        return y, scores if need_scores else None, probs if need_probs else None
    B, heads, T, _ = q.shape
    if (
        q.device.type == "cpu"
        and (q.dtype == torch.bfloat16 or dropout_p)
        and not is_causal
        and (mask is None or mask.dtype == torch.bool)
        and k.shape[-2] == T
        and kernels.bmm_pays(training, B, heads, T)
    ):
        # fp32 with dropout too: SDPA with dropout on CPU measured slower than these matmuls with the faster
        # mask (fp32, 32 x 4 x 128 x 64, forward + backward at p 0.1: 30 ms against 18)
        y = kernels.bmm_attention(q, k, v, mask, dropout_p)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    return y, None, None


class FeedForward(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """down(act(up(x))) [+ residual]; in inference the activation and the add fused (kernels.linear)."""
        act = kernels.activation_name(self.act)
        if act is not None and kernels.plain_linear(self.up):
            h = kernels.linear(x, self.up.weight, self.up.bias, act)
        else:
            h = self.act(self.up(x))
        return self.down(h) if residual is None else kernels.linear_add(h, self.down, residual)


class Layer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attn = SelfAttention(config)
        self.attn_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ffn_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.norm_position == "pre"

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        need_weights: bool = False,
        unpadding: Unpadding | None = None,
        *,
        is_causal: bool = False,
        query: torch.Tensor | None = None,
        need_scores: bool = False,
        cache: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(hidden states, scores, probabilities); with `query` the hidden states are that stream's, its queries
        attending to x (SelfAttention.forward)."""
        stream = x if query is None else query  # what the residual adds to
        options = dict(is_causal=is_causal, need_scores=need_scores, cache=cache)
        if self.pre_norm:  # LayerNorm before each sub-layer; the residual stream itself is never normalised
            q = None if query is None else self.attn_norm(query)
            a, scores, probs = self.attn(self.attn_norm(x), mask, need_weights, unpadding, query=q, **options)
            y = stream + self.dropout(a)
            return y + self.dropout(self.ffn(self.ffn_norm(y))), scores, probs
        # Residual "add & norm": the sub-layer's output is added to its input, so nothing it lost is lost.
        if not self.training:  # dropout is the identity: each add goes into its sub-layer's last kernel
            a, scores, probs = self.attn(x, mask, need_weights, unpadding, query=query, residual=stream, **options)
            x = self.attn_norm(a)
            return self.ffn_norm(self.ffn(x, residual=x)), scores, probs
        a, scores, probs = self.attn(x, mask, need_weights, unpadding, query=query, **options)
        x = self.attn_norm(stream + self.dropout(a))
        x = self.ffn_norm(x + self.dropout(self.ffn(x)))
        return x, scores, probs


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig, add_pooler: bool | None = None):
        super().__init__()
        self.config = config
        if add_pooler is None:  # as each family's transformers base model: ELECTRA has no pooler
            add_pooler = config.family.pooler
        self.embeddings = Embeddings(config)
        # ALBERT / ELECTRA: the E-wide embeddings are projected to the hidden size H.
        self.project = nn.Linear(config.embedding_width, config.hidden_size) if config.projects_embeddings else None
        # ALBERT: one layer shared by all depths; otherwise one layer per depth.
        self.layers = nn.ModuleList(
            Layer(config) for _ in range(1 if config.shares_layers else config.num_hidden_layers)
        )
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooler else None
        # Pre-LayerNorm: the last layer's output is normalised once more (GPT-2's ln_f).
        pre = config.norm_position == "pre"
        self.final_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if pre else None
        self.apply(lambda m: init_weights(m, config.initializer_range))
        if pre:  # GPT-2: each residual branch's last projection at std / √(2 × layers), so the sum keeps its scale
            std = config.initializer_range / math.sqrt(2 * config.num_hidden_layers)
            for layer in self.layers:
                for proj in (layer.attn.out, layer.ffn.down):
                    nn.init.normal_(proj.weight, std=std)

    def layer_at(self, depth: int) -> Layer:
        """The layer run at `depth` (0-based): the one shared layer for ALBERT."""
        return self.layers[depth % len(self.layers)]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        unpad: bool = False,
        position_ids: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        output_scores: bool = False,
        extra_ids: dict[str, torch.Tensor] | None = None,
        query_stream: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> EncoderOutput:
        """`unpad=True` runs everything but attention on the real tokens only; outputs at padding are then zeros
        (and attention rows of padded queries differ from transformers'), so it is for callers that read only
        real positions: embeddings, serving.

        `attn_mask` (bool, True = may attend, or additive float; broadcastable to (B, heads, T, T)) and
        `is_causal` restrict attention beyond the padding of `attention_mask`. `query_stream` (B, T, H) runs
        a second, query-only stream through the same layers (XLNet's g): at each layer its queries attend to
        the content stream's keys and values under `query_mask` (and the padding); its last layer comes back
        as `query_state`. `extra_ids` gives ids for the config's `extra_embeddings` by name.

        A causal family (GPT-2) is always causal. `cache` (generation, `KVCache`): the keys and values of the
        positions already run; these T positions continue them (positions from `cache.length`) and are added.
        Without padding only: a batch of prompts of one length."""
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.max_length:
            raise ValueError(
                f"sequence length {past + T} exceeds the model's {self.config.max_length} positions "
                f"(max_position_embeddings={self.config.max_position_embeddings})"
            )
        is_causal = is_causal or self.config.family.causal
        if cache is not None:
            if unpad or query_stream is not None or (attention_mask is not None and not bool(attention_mask.all())):
                raise ValueError("a KV cache runs on unpadded prompts of one length, one stream")
            if position_ids is None:
                position_ids = torch.arange(past, past + T, device=input_ids.device).expand(B, T)
        if unpad and query_stream is not None:
            raise ValueError("two-stream attention runs on padded (B, T, H) streams; call it without unpad")
        mask, unpadding = None, None
        x = self.embeddings(input_ids, token_type_ids, position_ids, extra_ids)  # (B, T, E)
        if self.project is not None:
            x = self.project(x)  # (B, T, H)
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): True where a key may be attended
            if unpad:
                unpadding = Unpadding.from_mask(attention_mask)
                x = unpadding.unpad(x)  # (N, H): the real tokens only
        g, g_mask, mask = query_stream, merge_masks(mask, query_mask), merge_masks(mask, attn_mask)
        hidden_states, attentions, scores = [x], [], []
        for depth in range(self.config.num_hidden_layers):
            layer = self.layer_at(depth)
            if g is not None:  # from the content stream of the layer below, as x is
                g = layer(x, g_mask, query=g)[0]
            x, s, probs = layer(
                x,
                mask,
                output_attentions,
                unpadding,
                is_causal=is_causal,
                need_scores=output_scores,
                cache=cache.layers[depth] if cache is not None else None,
            )
            hidden_states.append(x)
            attentions.append(probs)
            scores.append(s)
        if cache is not None:
            cache.length += T
        if self.final_norm is not None:
            x = hidden_states[-1] = self.final_norm(x)
            g = None if g is None else self.final_norm(g)
        if unpadding is not None:
            x = unpadding.pad(x)
            hidden_states = [unpadding.pad(h) for h in hidden_states] if output_hidden_states else hidden_states
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return EncoderOutput(
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            scores=tuple(scores) if output_scores else None,
            query_state=g,
        )


# ----------------------------------------------------------------------------------------------- heads


class MLMHead(nn.Module):
    """transform (dense H → E, act, LayerNorm), then a decoder tied to the word embeddings, plus a bias.

    The activation is the config's for BERT and ALBERT; RoBERTa's lm_head and ELECTRA's generator head
    use exact GELU whatever the config says, as their transformers classes do."""

    def __init__(self, config: BertConfig):
        super().__init__()
        E = config.embedding_width
        self.dense = nn.Linear(config.hidden_size, E)
        self.act = ACT2FN[config.family.mlm_act or config.hidden_act]
        self.norm = LayerNorm(E, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        # hidden: (N, H) — callers pass only the masked positions, so the V-wide projection is done
        # for 15% of tokens instead of all of them. word_embeddings: (V, E). Returns (N, V) logits.
        return F.linear(self.norm(self.act(self.dense(hidden))), word_embeddings, self.bias)


class LMHead(nn.Module):
    """GPT-2's language-model head: the last hidden states against the word embeddings, no bias and no weights
    of its own (lm_head is tied to wte). (N, H) hidden states -> (N, V) next-token logits."""

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, word_embeddings)


class NSPHead(nn.Linear):
    """Next-sentence (or sentence-order) prediction: 2 logits from the pooled [CLS] vector."""

    def __init__(self, config: BertConfig):
        super().__init__(config.hidden_size, 2)
        init_weights(self, config.initializer_range)


class ClassifierHead(nn.Module):
    """dropout → linear over the pooled [CLS] vector (sequence tasks) or every token (tagging)."""

    def __init__(self, config: BertConfig, num_labels: int | None = None):
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.out = nn.Linear(config.hidden_size, num_labels or config.num_labels)
        init_weights(self.out, config.initializer_range)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(hidden))


class FirstTokenClassifierHead(nn.Module):
    """RoBERTa's and ELECTRA's sequence classifier, on the first token's hidden state (they have no pooler):
    dropout → dense H → H → tanh (RoBERTa) or GELU (ELECTRA) → dropout → out_proj."""

    reads_first_token = True

    def __init__(self, config: BertConfig, num_labels: int | None = None):
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.family.classifier_act]
        self.out = nn.Linear(config.hidden_size, num_labels or config.num_labels)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, first: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, C)
        return self.out(self.dropout(self.act(self.dense(self.dropout(first)))))


class LastTokenClassifierHead(nn.Module):
    """GPT-2's sequence classifier (`score`): a bias-free linear layer on the last real token, the one position of
    a causal model that has seen the whole text (GPT-1's "extract" token)."""

    reads_last_token = True

    def __init__(self, config: BertConfig, num_labels: int | None = None):
        super().__init__()
        self.out = nn.Linear(config.hidden_size, num_labels or config.num_labels, bias=False)
        init_weights(self.out, config.initializer_range)

    def forward(self, last: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, C)
        return self.out(last)


class LastTokenChoiceHead(ClassifierHead):
    """GPT2DoubleHeadsModel's multiple-choice head (a SequenceSummary at each choice's last token): dropout, then
    one score with a bias."""

    reads_last_token = True


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, H) -> (B, H): each row's last real token (padding on the right)."""
    if attention_mask is None:
        return hidden[:, -1]
    index = attention_mask.long().sum(1).clamp(min=1) - 1  # (B,)
    return hidden[torch.arange(len(hidden), device=hidden.device), index]


class RTDHead(nn.Module):
    """ELECTRA's discriminator: dense H → H, the config's activation, then one logit per token —
    "this token was replaced" (replaced-token detection)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.prediction = nn.Linear(config.hidden_size, 1)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., H) -> (...)
        return self.prediction(self.act(self.dense(hidden))).squeeze(-1)


def span_head(config: BertConfig) -> nn.Linear:
    """Extractive QA: a start and an end logit for every token, (B, T, H) -> (B, T, 2), as HF's qa_outputs."""
    head = nn.Linear(config.hidden_size, 2)
    init_weights(head, config.initializer_range)
    return head


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: truncated-normal-like N(0, 0.02) weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
