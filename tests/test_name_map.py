"""Name maps with transforms (hf.py): transposed and fused tensors round-trip exactly through a folder, the
file's shapes are checked after the transform, and a square matrix loaded without its transpose is caught by
a parity test and by nothing else. The rows of every family agree with config.py's family rows."""

import json
from dataclasses import replace

import pytest
import torch
from helpers import one_thread  # noqa: F401  (tiny models: one thread)
from safetensors.torch import load_file, save_file

from bertkit import hf
from bertkit.config import FAMILY_SPECS, BertConfig, from_preset
from bertkit.errors import CheckpointError
from bertkit.hf import LAYER_MAP, TRANSPOSE, Entry, Fuse, Stack, build_heads, load_pretrained, save_pretrained
from bertkit.model import BertEncoder

CONFIG = dict(
    vocab_size=60,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=20,
)
QKV = ("attn.query", "attn.key", "attn.value")


def conv1d_row(transpose_out: bool = True) -> hf.FamilyMap:
    """BERT's row with its layers stored the GPT-2 way: Q, K and V fused in one `c_attn`, every attention
    weight in Conv1D's (in, out) layout. `transpose_out=False` forgets the transpose of the square `c_proj`."""
    layer = [
        (tuple(f"{m}.weight" for m in QKV), "attn.c_attn.weight", Fuse(0), TRANSPOSE),
        (tuple(f"{m}.bias" for m in QKV), "attn.c_attn.bias", Fuse(0)),
        ("attn.out.weight", "attn.c_proj.weight", *([TRANSPOSE] if transpose_out else [])),
        ("attn.out.bias", "attn.c_proj.bias"),
        *[pair for pair in LAYER_MAP if not pair[0].startswith("attn.")],
    ]
    return replace(hf.FAMILIES["bert"], layer="h.{i}", layer_map=layer)


def random_encoder(**overrides) -> BertEncoder:
    torch.manual_seed(0)
    encoder = BertEncoder(BertConfig(**{**CONFIG, **overrides})).eval()
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return encoder


def outputs(encoder: BertEncoder) -> torch.Tensor:
    ids = torch.randint(3, 60, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return encoder(ids).last_hidden_state


def test_transposed_and_fused_tensors_round_trip_exactly(tmp_path, monkeypatch):
    monkeypatch.setitem(hf.FAMILIES, "bert", conv1d_row())
    encoder = random_encoder()
    save_pretrained(tmp_path, encoder)
    state = load_file(tmp_path / "model.safetensors")
    assert "h.0.attention.self.query.weight" not in state
    w, b = state["h.0.attn.c_attn.weight"], state["h.0.attn.c_attn.bias"]
    assert w.shape == (16, 48) and b.shape == (48,)  # Conv1D: (in, 3 × out)
    attn = encoder.layers[0].attn
    x = torch.randn(5, 16)
    with torch.no_grad():  # what GPT-2's Conv1D computes with the stored tensor: x @ W + b, Q K V side by side
        torch.testing.assert_close(x @ w + b, torch.cat([attn.query(x), attn.key(x), attn.value(x)], -1))
        torch.testing.assert_close(x @ state["h.0.attn.c_proj.weight"], x @ attn.out.weight.T)
    back = load_pretrained(tmp_path, tokenizer=False).encoder
    for (name, ours), (name_back, theirs) in zip(encoder.state_dict().items(), back.state_dict().items(), strict=True):
        assert name == name_back and torch.equal(ours, theirs), name
    assert torch.equal(outputs(back), outputs(encoder))


def test_stack_and_chained_steps_invert_exactly():
    torch.manual_seed(0)
    a, b, c = (torch.randn(3, 5) for _ in range(3))
    stacked = Entry(("a", "b", "c"), "abc", (Stack(),))
    assert stacked.hf_shape([(3, 5)] * 3) == (3, 3, 5)
    assert torch.equal(stacked.to_hf([a, b, c]), torch.stack([a, b, c]))
    back = stacked.from_hf(torch.stack([a, b, c]), [(3, 5)] * 3)
    assert all(torch.equal(x, y) for x, y in zip(back, (a, b, c), strict=True))
    # Fused rows of different heights, then transposed: split back by our own shapes.
    d = torch.randn(2, 5)
    chain = Entry(("a", "d"), "ad", (Fuse(0), TRANSPOSE))
    assert chain.hf_shape([(3, 5), (2, 5)]) == (5, 5)
    stored = chain.to_hf([a, d])
    assert torch.equal(stored, torch.cat([a, d]).T)
    back = chain.from_hf(stored, [(3, 5), (2, 5)])
    assert torch.equal(back[0], a) and torch.equal(back[1], d)


def test_a_square_matrix_loaded_without_its_transpose_passes_every_shape_check_but_not_parity(tmp_path, monkeypatch):
    """`c_proj` is H × H: read as it is stored, with its transpose forgotten, it fits every shape check and
    loads without a word. Only comparing outputs shows the mistake, which is why every family has parity tests."""
    encoder = random_encoder()
    monkeypatch.setitem(hf.FAMILIES, "bert", conv1d_row())
    save_pretrained(tmp_path, encoder)
    right = load_pretrained(tmp_path, tokenizer=False).encoder
    monkeypatch.setitem(hf.FAMILIES, "bert", conv1d_row(transpose_out=False))
    wrong = load_pretrained(tmp_path, tokenizer=False).encoder  # no error: every shape fits
    assert torch.equal(outputs(right), outputs(encoder))
    assert (outputs(wrong) - outputs(encoder)).abs().max() > 1e-2
    assert torch.equal(wrong.layers[0].attn.out.weight, encoder.layers[0].attn.out.weight.T)


def test_the_shape_after_the_transform_is_checked_and_bad_values_named(tmp_path, monkeypatch):
    monkeypatch.setitem(hf.FAMILIES, "bert", conv1d_row())
    save_pretrained(tmp_path, random_encoder())
    path = tmp_path / "model.safetensors"
    good = load_file(path)
    stored_untransposed = {**good, "h.1.attn.c_attn.weight": good["h.1.attn.c_attn.weight"].T.contiguous()}
    save_file(stored_untransposed, path)
    with pytest.raises(CheckpointError, match=r"h\.1\.attn\.c_attn\.weight' has shape \(48, 16\).*implies \(16, 48\)"):
        load_pretrained(tmp_path, tokenizer=False)
    nan = good["h.0.attn.c_attn.bias"].clone()
    nan[3] = float("nan")
    save_file({**good, "h.0.attn.c_attn.bias": nan}, path)
    with pytest.raises(CheckpointError, match=r"h\.0\.attn\.c_attn\.bias.*NaN"):
        load_pretrained(tmp_path, tokenizer=False)
    save_file({k: v for k, v in good.items() if k != "h.0.attn.c_attn.weight"}, path)
    with pytest.raises(CheckpointError, match=r"missing tensors 'h\.0\.attn\.c_attn\.weight'"):
        load_pretrained(tmp_path, tokenizer=False)


def test_no_token_types_means_no_such_tensor(tmp_path):
    encoder = random_encoder(type_vocab_size=0)
    save_pretrained(tmp_path, encoder)
    state = load_file(tmp_path / "model.safetensors")
    assert not any("token_type" in name for name in state)
    back = load_pretrained(tmp_path, tokenizer=False).encoder
    assert back.embeddings.token_type_embeddings is None
    assert torch.equal(outputs(back), outputs(encoder))
    save_file({**state, "embeddings.token_type_embeddings.weight": torch.zeros(2, 16)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected tensors 'embeddings.token_type_embeddings.weight'"):
        load_pretrained(tmp_path, tokenizer=False)


@pytest.mark.parametrize(
    "overrides, tensor",
    [({"norm_position": "pre"}, "encoder.final_norm"), ({"extra_embeddings": {"task_type": 3}}, "task_type")],
)
def test_a_model_its_family_cannot_hold_is_refused_before_anything_is_written(tmp_path, overrides, tensor):
    with pytest.raises(CheckpointError, match=f"no Hugging Face name for .*{tensor}.*BERT"):
        save_pretrained(tmp_path / "out", random_encoder(**overrides))
    assert not (tmp_path / "out").exists()


def test_a_head_set_no_transformers_class_holds_is_refused(tmp_path):
    config = BertConfig(**CONFIG, id2label={0: "a", 1: "b"})
    with pytest.raises(CheckpointError, match=r"heads \{mlm, qa\}.*\{mlm, nsp\}"):
        save_pretrained(tmp_path / "out", BertEncoder(config), build_heads(config, ["mlm", "qa"]))
    assert not (tmp_path / "out").exists()


def test_every_head_set_bertkit_saves_has_an_architecture():
    from bertkit.finetune.model import HEAD_NAMES

    pretraining = [{"mlm", "nsp"}, {"mlm"}, {"rtd"}]  # BERT / ALBERT, RoBERTa and ELECTRA's generator, ELECTRA
    for heads in pretraining + [{h} for h in HEAD_NAMES.values()] + [set()]:
        assert frozenset(heads) in hf.ARCHITECTURE_SUFFIX, heads


@pytest.mark.parametrize("model_type", sorted(FAMILY_SPECS))
def test_every_family_row_has_a_name_map_that_names_each_tensor_once(tmp_path, model_type):
    spec, row = FAMILY_SPECS[model_type], hf.FAMILIES[model_type]
    assert ("multiple_choice" in row.heads) == spec.multiple_choice
    preset = {"bert": "bert-tiny", "albert": "albert-base", "roberta": "roberta-base", "electra": "electra-small"}
    preset["ernie"], preset["distilbert"] = "ernie-mini-chinese", "distilbert-mini-chinese"
    preset["gpt2"] = "gpt2-tiny-chinese"
    config = from_preset(preset[model_type], **{**CONFIG, "vocab_size": 60}, id2label={0: "a", 1: "b"})
    encoder = BertEncoder(config)
    for head in [None, *row.heads]:
        modules = {"encoder": encoder, **(build_heads(config, [head]) if head else {})}
        entries = hf.name_map(modules)
        theirs, ours = [e.theirs for e in entries], [o for e in entries for o in e.ours]
        assert len(set(theirs)) == len(theirs) and len(set(ours)) == len(ours), head


def test_saved_config_of_every_family_is_as_transformers_writes_it(tmp_path):
    """bertkit's own fields (norm_position, extra_embeddings) are not in today's files; ALBERT's renamed key is."""
    for name in ("bert-mini", "albert-base", "roberta-base", "electra-small", "gpt2"):
        config = from_preset(name)
        config.save(tmp_path / "config.json")
        data = json.loads((tmp_path / "config.json").read_text())
        assert "norm_position" not in data and "extra_embeddings" not in data
        assert ("type_vocab_size" in data) == (config.model_type != "gpt2")  # GPT-2 has none
        assert ("classifier_dropout_prob" in data) == (config.model_type == "albert")
