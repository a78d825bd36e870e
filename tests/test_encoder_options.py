"""The encoder's open options, each against a computation written out here by hand: explicit and causal masks,
attention scores, two-stream (query-only) attention, pre-LayerNorm layers, no token types, extra embedding
tables. The default path (post-norm, padding mask) is the one tests/test_reference.py pins bit for bit."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import one_thread  # noqa: F401  (tiny models: one thread)

from bertkit.config import BertConfig
from bertkit.errors import ConfigError
from bertkit.model import BertEncoder, Layer, merge_masks
from bertkit.sizes import parameter_table


def config(**overrides) -> BertConfig:
    base = dict(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertConfig(**{**base, **overrides})


def encoder(**overrides) -> BertEncoder:
    torch.manual_seed(0)
    enc = BertEncoder(config(**overrides)).eval()
    with torch.no_grad():  # LayerNorms and biases away from 1 and 0, so a skipped one cannot hide
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return enc


def ids(B: int = 3, T: int = 9) -> torch.Tensor:
    return torch.randint(5, 50, (B, T), generator=torch.Generator().manual_seed(1))


def reference_attention(attn, x_q: torch.Tensor, x_kv: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """softmax(Q Kᵀ / √d + bias) V per head, then the output projection, from the module's weights."""
    B, Tq, H = x_q.shape
    h = attn.num_heads
    q = (x_q @ attn.query.weight.T + attn.query.bias).view(B, Tq, h, -1).transpose(1, 2)
    k = (x_kv @ attn.key.weight.T + attn.key.bias).view(B, x_kv.shape[1], h, -1).transpose(1, 2)
    v = (x_kv @ attn.value.weight.T + attn.value.bias).view(B, x_kv.shape[1], h, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, Tq, H)
    return y @ attn.out.weight.T + attn.out.bias


def additive(mask: torch.Tensor) -> torch.Tensor:
    return torch.zeros(mask.shape).masked_fill(~mask, -math.inf)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ masks


def test_causal_equals_a_lower_triangular_mask_and_a_loop_over_prefixes():
    enc, x = encoder(), ids()
    T = x.shape[1]
    tril = torch.ones(T, T, dtype=torch.bool).tril()
    with torch.no_grad():
        causal = enc(x, is_causal=True).last_hidden_state
        close(enc(x, attn_mask=tril).last_hidden_state, causal)
        close(enc(x, attn_mask=additive(tril)).last_hidden_state, causal)  # the additive form of the same mask
        close(enc(x, is_causal=True, output_attentions=True).last_hidden_state, causal)  # the by-hand path
        # Left to right: position t never sees t+1.., so a run on the prefix x[:, :t+1] gives the same vector.
        for t in range(T):
            close(enc(x[:, : t + 1], is_causal=True).last_hidden_state[:, t], causal[:, t])
        # One layer needs no causal machinery to compare against: the last token of a prefix sees exactly it.
        one = encoder(num_hidden_layers=1)
        first = one(x, is_causal=True).last_hidden_state
        for t in range(T):
            close(one(x[:, : t + 1]).last_hidden_state[:, t], first[:, t])
    assert not torch.allclose(causal, enc(x).last_hidden_state, atol=1e-3)  # the option changes something


def test_causal_with_padding_is_both_masks():
    enc, x = encoder(), ids()
    pad = torch.ones_like(x)
    pad[1, 6:] = 0
    pad[2, 3:] = 0
    T = x.shape[1]
    both = pad.bool()[:, None, None, :] & torch.ones(T, T, dtype=torch.bool).tril()
    with torch.no_grad():
        out = enc(x, pad, is_causal=True, output_attentions=True)
        close(enc(x, attn_mask=both).last_hidden_state, out.last_hidden_state)
        close(enc(x, pad, is_causal=True).last_hidden_state, out.last_hidden_state)  # SDPA: one merged mask
    probs = out.attentions[0]
    assert probs.triu(1).abs().max() == 0  # nothing from the future
    assert probs[1, :, :, 6:].abs().max() == 0 and probs[2, :, :, 3:].abs().max() == 0  # nothing from padding


def test_an_additive_bias_matches_the_formula_on_every_path():
    """An additive float mask (a position bias, ALiBi-like) goes through SDPA and through the by-hand path."""
    torch.manual_seed(2)
    layer = Layer(config()).eval()
    x = torch.randn(2, 7, 32)
    bias = torch.randn(1, 4, 7, 7)
    with torch.no_grad():
        want = reference_attention(layer.attn, x, x, bias)
        fast, scores, probs = layer.attn(x, bias)
        slow, scores, probs = layer.attn(x, bias, need_weights=True, need_scores=True)
    close(fast, want)
    close(slow, want)
    assert torch.equal(scores.softmax(-1), probs)


def test_merged_masks():
    a = torch.tensor([[True, True, False]])
    b = torch.tensor([[True, False, True]])
    assert torch.equal(merge_masks(a, b), a & b)
    assert merge_masks(None, b) is b and merge_masks(a, None) is a
    mixed = merge_masks(a, torch.tensor([[0.5, 1.0, 2.0]]))
    assert mixed.dtype == torch.float32 and mixed.tolist() == [[0.5, 1.0, -math.inf]]


# ----------------------------------------------------------------------------------------------- scores


def test_scores_are_the_softmax_input_and_give_the_probabilities():
    enc, x = encoder(), ids()
    pad = torch.ones_like(x)
    pad[0, 5:] = 0
    with torch.no_grad():
        out = enc(x, pad, output_scores=True, output_attentions=True, output_hidden_states=True)
        plain = enc(x, pad)
    assert len(out.scores) == 2 and out.scores[0].shape == (3, 4, 9, 9)
    for s, p in zip(out.scores, out.attentions, strict=True):
        assert torch.equal(s.softmax(-1), p)
    close(out.last_hidden_state, plain.last_hidden_state)
    assert plain.scores is None and enc(x, output_scores=True).attentions is None
    # Layer 0's scores by hand: Q Kᵀ / √d from its weights on the embeddings; masked keys at the dtype's minimum.
    attn, h0 = enc.layers[0].attn, out.hidden_states[0]
    q = (h0 @ attn.query.weight.T + attn.query.bias).view(3, 9, 4, 8).transpose(1, 2)
    k = (h0 @ attn.key.weight.T + attn.key.bias).view(3, 9, 4, 8).transpose(1, 2)
    want = q @ k.transpose(-1, -2) / math.sqrt(8)
    close(out.scores[0][1], want[1])
    close(out.scores[0][0, ..., :5], want[0, ..., :5])
    assert (out.scores[0][0, ..., 5:] == torch.finfo(torch.float32).min).all()


# ------------------------------------------------------------------------------------------- two streams


def test_two_stream_with_g_equal_h_and_the_same_mask_is_the_normal_layer():
    enc, x = encoder(), ids()
    pad = torch.ones_like(x)
    pad[2, 4:] = 0
    layer = enc.layers[0]
    h = torch.randn(3, 9, 32)
    mask = pad.bool()[:, None, None, :]
    with torch.no_grad():
        close(layer(h, mask, query=h)[0], layer(h, mask)[0])
        h0 = enc(x, pad, output_hidden_states=True).hidden_states[0]
        out = enc(x, pad, query_stream=h0)
    close(out.query_state, out.last_hidden_state)


def test_the_query_stream_follows_the_formula_and_never_sees_its_own_token():
    """XLNet's query stream: queries from g, keys and values from h, under a mask without the diagonal."""
    torch.manual_seed(3)
    layer = Layer(config()).eval()
    h, g = torch.randn(2, 6, 32), torch.randn(2, 6, 32)
    not_self = ~torch.eye(6, dtype=torch.bool)
    with torch.no_grad():
        y = layer(h, not_self, query=g)[0]
        a = layer.attn_norm(g + reference_attention(layer.attn, g, h, additive(not_self)))
        close(y, layer.ffn_norm(a + layer.ffn(a)))
        changed = h.clone()
        changed[:, 2] += 1.0  # token 2's content
        moved = layer(changed, not_self, query=g)[0]
    assert torch.equal(moved[:, 2], y[:, 2])  # the query at 2 does not see token 2
    assert not torch.allclose(moved[:, 3], y[:, 3])  # the others do


def test_two_streams_through_the_encoder_share_its_weights():
    enc, x = encoder(), ids()
    g = torch.randn(3, 9, 32)
    not_self = ~torch.eye(9, dtype=torch.bool)
    with torch.no_grad():
        out = enc(x, query_stream=g, query_mask=not_self)
        h = enc(x, output_hidden_states=True).hidden_states
        want = g
        for depth in range(2):  # each layer's query stream reads the content stream of the layer below
            want = enc.layers[depth](h[depth], not_self, query=want)[0]
    close(out.query_state, want)
    close(out.last_hidden_state, h[-1])  # the content stream is unchanged by the query stream
    with pytest.raises(ValueError, match="two-stream"):
        enc.layers[0].attn(torch.randn(4, 32), None, unpadding=object(), query=g)
    with pytest.raises(ValueError, match="two-stream"):
        enc(x, torch.ones_like(x), unpad=True, query_stream=g)


# --------------------------------------------------------------------------------------------- pre-norm


def test_pre_norm_layer_is_the_formula():
    torch.manual_seed(4)
    layer = Layer(config(norm_position="pre")).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        x = torch.randn(2, 7, 32)
        n1 = F.layer_norm(x, (32,), layer.attn_norm.weight, layer.attn_norm.bias, 1e-12)
        y = x + reference_attention(layer.attn, n1, n1, None)
        n2 = F.layer_norm(y, (32,), layer.ffn_norm.weight, layer.ffn_norm.bias, 1e-12)
        want = y + layer.ffn.down(F.gelu(layer.ffn.up(n2)))
        close(layer(x, None)[0], want)


def test_pre_norm_encoder_normalises_once_at_the_end_and_not_the_embeddings():
    enc, x = encoder(norm_position="pre"), ids()
    assert enc.embeddings.norm is None and enc.final_norm is not None
    assert "embeddings.norm.weight" not in enc.state_dict() and "final_norm.weight" in enc.state_dict()
    with torch.no_grad():
        out = enc(x, output_hidden_states=True)
        e = enc.embeddings
        h = e.word_embeddings(x) + e.position_embeddings.weight[:9] + e.token_type_embeddings.weight[0]
        close(out.hidden_states[0], h)  # no LayerNorm on the embeddings
        for layer in enc.layers:
            h = layer(h, None)[0]
        close(out.last_hidden_state, enc.final_norm(h))
    assert out.hidden_states[-1] is out.last_hidden_state
    assert dict(parameter_table({"encoder": enc}))["final LayerNorm (pre-norm)"] == 64


def test_pre_norm_unpadded_matches_padded_at_real_tokens():
    enc, x = encoder(norm_position="pre"), ids()
    pad = torch.ones_like(x)
    pad[1, 5:] = 0
    with torch.no_grad():
        padded = enc(x, pad).last_hidden_state
        unpadded = enc(x, pad, unpad=True).last_hidden_state
    close(unpadded[pad.bool()], padded[pad.bool()])
    assert unpadded[1, 5:].abs().max() == 0


# ------------------------------------------------------------------------------------------- embeddings


def test_no_token_type_table():
    enc, x = encoder(type_vocab_size=0), ids()
    assert enc.embeddings.token_type_embeddings is None
    assert not any("token_type" in k for k in enc.state_dict())
    with torch.no_grad():
        e = enc.embeddings
        want = e.norm(e.word_embeddings(x) + e.position_embeddings.weight[:9])
        assert torch.equal(e(x), want)
        assert torch.equal(e(x, token_type_ids=torch.ones_like(x)), want)  # segment ids given are ignored
    with pytest.raises(ConfigError, match="type_vocab_size"):
        config(type_vocab_size=-1)


def test_extra_table_zero_initialised_changes_nothing_and_ids_pick_its_rows():
    plain = encoder()
    extra = encoder(extra_embeddings={"task_type": 3})
    missing, unexpected = extra.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["embeddings.extra_embeddings.task_type.weight"] and not unexpected
    x = ids()
    task = torch.randint(0, 3, x.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        extra.embeddings.extra_embeddings["task_type"].weight.zero_()
        assert torch.equal(extra(x, extra_ids={"task_type": task}).last_hidden_state, plain(x).last_hidden_state)
        table = extra.embeddings.extra_embeddings["task_type"].weight
        table.normal_()
        e = extra.embeddings
        base = e.word_embeddings(x) + e.position_embeddings.weight[:9] + e.token_type_embeddings.weight[0]
        assert torch.equal(e(x, extra_ids={"task_type": task}), e.norm(base + table[task]))
        assert torch.equal(e(x), e.norm(base + table[0]))  # no ids: row 0, as token types
    with pytest.raises(ValueError, match="task_typo"):
        extra(x, extra_ids={"task_typo": task})
    assert dict(parameter_table({"encoder": extra}))["embeddings: task_type (n × H)"] == 3 * 32


@pytest.mark.parametrize(
    "value, fragment",
    [({"word": 2}, "word"), ({"task type": 2}, "identifier"), ({"task_type": 0}, "positive"), ([3], "object")],
)
def test_bad_extra_tables_are_named(value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config(extra_embeddings=value)
    with pytest.raises(ConfigError, match="norm_position"):
        config(norm_position="sandwich")


def test_the_fused_qkv_kept_for_inference_follows_every_change_of_the_weights():
    torch.manual_seed(0)
    encoder = BertEncoder(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).eval()
    ids = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        before = encoder(ids).last_hidden_state
        encoder.layers[0].attn.key.weight.mul_(2)  # an in-place update, as an optimizer step or a load makes
        after = encoder(ids).last_hidden_state
    fresh = encoder(ids).last_hidden_state  # with autograd on: the weights concatenated anew
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, fresh.detach(), rtol=0, atol=0)
