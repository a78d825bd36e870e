"""The family's pretraining recipes: ELECTRA's generator and discriminator, RoBERTa's FULL-SENTENCES inputs,
each recipe from the CLI on the built-in corpus, and the one-line errors for a family's mistakes."""

import json

import numpy as np
import pytest
import torch
import transformers
from helpers import one_thread  # noqa: F401 - module-wide single thread
from test_cli import assert_user_error, run

from bertkit.config import from_preset
from bertkit.errors import ConfigError
from bertkit.model import BertEncoder, MLMHead, RTDHead
from bertkit.pretrain.masking import IGNORE_INDEX
from bertkit.pretrain.objectives import ElectraPretraining, electra_generator_config, sample_softmax
from bertkit.pretrain.pairs import create_full_sentence_instances


def _electra(seed=0, vocab=80):
    torch.manual_seed(seed)
    disc = from_preset(
        "electra-small",
        vocab_size=vocab,
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=2,
        intermediate_size=128,
        embedding_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    gen = electra_generator_config(disc, 0.25)
    model = ElectraPretraining(BertEncoder(gen), MLMHead(gen), BertEncoder(disc), RTDHead(disc))
    ids = torch.randint(5, vocab, (4, 16))
    labels = torch.full_like(ids, IGNORE_INDEX)
    chosen = torch.rand(ids.shape) < 0.3
    chosen[:, 0] = False
    labels[chosen] = ids[chosen]
    inputs = ids.clone()
    inputs[chosen] = 4  # [MASK]
    mask = torch.ones_like(ids)
    mask[3, 12:] = 0
    return model, inputs, labels, mask, ids


def test_electra_generator_is_smaller_and_shares_only_the_embeddings():
    model, *_ = _electra()
    assert model.generator.config.hidden_size == 16 and model.encoder.config.hidden_size == 64
    assert model.generator.embeddings is model.encoder.embeddings  # tables and LayerNorm: one module
    assert model.generator.project is not None and model.encoder.project is not None  # each its own E -> H
    shared = {id(p) for p in model.encoder.embeddings.parameters()}
    gen_own = [p for n, p in model.generator.named_parameters() if not n.startswith("embeddings.")]
    assert not shared & {id(p) for p in gen_own}
    with pytest.raises(ConfigError, match="generator-size"):
        electra_generator_config(model.encoder.config, 1.0)
    with pytest.raises(ConfigError, match="smaller"):
        ElectraPretraining(
            BertEncoder(model.encoder.config),
            MLMHead(model.encoder.config),
            BertEncoder(model.encoder.config),
            RTDHead(model.encoder.config),
        )


def test_discriminator_loss_sends_no_gradient_into_the_generator():
    model, inputs, labels, mask, _ = _electra()
    out = model({"input_ids": inputs, "labels": labels, "attention_mask": mask})
    out.losses["rtd"].sum.backward()
    generator_only = [
        *model.generator.layers.parameters(),
        *model.generator.project.parameters(),
        *model.mlm.parameters(),
    ]
    assert all(p.grad is None or not p.grad.any() for p in generator_only)
    assert model.encoder.layers[0].ffn.up.weight.grad.abs().sum() > 0  # the discriminator does learn
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # and the shared tables
    model.zero_grad()
    model({"input_ids": inputs, "labels": labels, "attention_mask": mask}).losses["mlm"].sum.backward()
    assert model.mlm.dense.weight.grad.abs().sum() > 0 and model.rtd.dense.weight.grad is None


def test_replaced_labels_mark_exactly_the_changed_tokens():
    model, inputs, labels, mask, original = _electra(seed=3)
    batch = {"input_ids": inputs, "labels": labels, "attention_mask": mask}
    out = model(batch)
    masked = labels != IGNORE_INDEX
    fed, replaced = out.tensors["rtd_input"], out.tensors["rtd_labels"]
    assert torch.equal(fed[~masked], original[~masked])  # only masked positions are resampled
    assert torch.equal(replaced, fed != original)  # a sample equal to the original counts as original
    assert out.metrics["replaced_share"] == (int(replaced[mask.bool()].sum()), int(mask.sum()))
    assert out.losses["rtd"].count == int(mask.sum()) == model.units(batch)["rtd"]
    assert out.losses["rtd"].weight == 50.0  # L = L_mlm + λ · L_disc
    # A generator that always predicts the original replaces nothing: every label is "original".
    logits_hook = model.mlm.register_forward_hook(
        lambda m, i, o: torch.full_like(o, -1e4).scatter_(1, original[masked][:, None], 1e4)
    )
    out = model(batch)
    logits_hook.remove()
    assert not out.tensors["rtd_labels"].any() and out.metrics["replaced_share"].numerator == 0


def test_generator_samples_follow_its_softmax_and_depend_only_on_the_uniforms():
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -30.0]]).repeat(40_000, 1)
    u = torch.rand(40_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(sample_softmax(logits, u), minlength=5).float() / len(u)
    assert torch.allclose(counts, logits[0].softmax(-1), atol=0.01)  # 4 standard errors at most
    assert counts[4] == 0  # a token of probability ~1e-14 is never drawn
    assert sample_softmax(logits[:3], torch.tensor([0.0, 0.9999999, 0.5])).tolist() == [0, 3, 0]
    # the ELECTRA forward given the same uniforms makes the same replacements, whatever torch's RNG state
    model, inputs, labels, mask, _ = _electra()
    u = torch.rand(inputs.shape)
    batch = {"input_ids": inputs, "labels": labels, "attention_mask": mask}
    outs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        outs.append(model(batch | {"sampling_u": u}).tensors["rtd_input"])
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], model(batch | {"sampling_u": 1 - u}).tensors["rtd_input"])
    # the loop's per-step draw: from the generator it is given, whatever torch's RNG state
    drawn = [model.prepare(batch, torch.Generator().manual_seed(7))["sampling_u"] for _ in range(2)]
    assert torch.equal(drawn[0], drawn[1]) and drawn[0].shape == inputs.shape


def test_full_sentences_cross_documents_only_after_a_separator_and_fit_the_length():
    CLS, SEP = 1, 2
    rng = np.random.default_rng(0)
    # Document d's tokens are 100·d + 10 .. 100·d + 99, so the document of every token is known.
    docs = [
        [rng.integers(100 * d + 10, 100 * d + 100, size=rng.integers(1, 9)) for _ in range(rng.integers(1, 5))]
        for d in range(40)
    ]
    for L in (8, 16, 33):
        for d in range(len(docs)):
            for inst in create_full_sentence_instances(docs, d, L, CLS, SEP, cross_documents=True):
                t = inst.tokens
                assert len(t) <= L and t[0] == CLS and t[-1] == SEP and not inst.token_type_ids.any()
                body = t[1:-1]
                doc_of = [None if x == SEP else x // 100 for x in body]
                assert doc_of[0] == d  # an instance starts in its own document
                for k in range(1, len(body)):
                    if doc_of[k] is not None and doc_of[k - 1] is not None:
                        assert doc_of[k] == doc_of[k - 1]  # no boundary without the separator
                    if doc_of[k] is None:  # a separator sits exactly at a document boundary
                        assert doc_of[k - 1] is not None and k + 1 < len(body) and doc_of[k + 1] != doc_of[k - 1]


@pytest.mark.parametrize(
    "recipe,architecture",
    [("albert", "AlbertForPreTraining"), ("roberta", "RobertaForMaskedLM"), ("electra", "ElectraForPreTraining")],
)
def test_each_recipe_trains_from_the_cli_on_the_built_in_corpus(tmp_path, recipe, architecture):
    out = tmp_path / "run"
    flags = (
        f"--recipe {recipe} --num-hidden-layers 2 --hidden-size 128 --steps 60 --batch-size 16 "
        "--max-seq-length 64 --eval-every 60 --log-every 10 --vocab-size 3000 --lr 1e-3 --dropout 0"
    )
    result = run("pretrain", "--out", str(out), *flags.split(), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert f"recipe {recipe}: {recipe}" in result.stdout
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "eval" not in r]
    assert train[-1]["mlm_loss"] < train[0]["mlm_loss"] - 0.3  # the loss falls (10-step means: noise ~0.05)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architectures"] == [architecture] and config["model_type"] == recipe
    model, info = getattr(transformers, architecture).from_pretrained(out / "model", output_loading_info=True)
    assert not any(info.values()), info  # every tensor named as transformers names it
    if recipe == "electra":
        assert train[-1]["rtd_loss"] < train[0]["rtd_loss"]
        assert "rtd_accuracy" in rows[-1]["eval"] and "rtd_recall" in rows[-1]["eval"]
        gen = transformers.ElectraForMaskedLM.from_pretrained(out / "generator")
        assert gen.config.hidden_size == 32  # a quarter of the discriminator
    if recipe == "roberta":
        tok = transformers.AutoTokenizer.from_pretrained(out / "model")
        assert type(tok).__name__ == "RobertaTokenizer" and config["pad_token_id"] == tok.pad_token_id == 1
        assert config["type_vocab_size"] == 1 and config["layer_norm_eps"] == 1e-5
    if recipe == "albert":
        assert "nsp_accuracy" in rows[-1]["eval"]  # SOP
        assert config["embedding_size"] == 128 and config["num_hidden_groups"] == 1


def test_family_mistakes_are_one_line_errors(tmp_path):
    base = ["pretrain", "--out", str(tmp_path / "run"), "--steps", "1", "--cache-dir", str(tmp_path / "cache")]
    assert_user_error(
        run(*base, "--recipe", "electra", "--preset", "bert-mini-chinese"),
        "--preset bert-mini-chinese: BERT has no replaced-token-detection (rtd) head",
    )
    assert_user_error(run(*base, "--recipe", "roberta", "--objective", "nsp"), "--objective full")
    assert_user_error(run(*base, "--recipe", "electra", "--generator-size", "1"), "--generator-size 1")
    assert_user_error(run(*base, "--chunk-tokens", "-1"), "--chunk-tokens")
    folder = tmp_path / "albert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "albert", "num_hidden_groups": 2}))
    assert_user_error(run("params", str(folder)), f"{folder / 'config.json'}: config field 'num_hidden_groups'")
    (folder / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
    assert_user_error(run("params", str(folder)), "model_type is 'deberta-v2'")
    roberta = tmp_path / "roberta"
    roberta.mkdir()
    (roberta / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])})
    )
    assert_user_error(run("tokenize", "--model", str(roberta), "hello"), f"{roberta / 'merges.txt'}: missing")


# ---- recipes are rows, named once ---------------------------------------------------------------------


def test_recipes_are_complete_rows_that_the_cli_and_the_family_script_read():
    import importlib.util
    import typing
    from pathlib import Path

    from bertkit.cli.pretraining import pretrain_cmd
    from bertkit.config import PRESETS
    from bertkit.hf import FAMILIES
    from bertkit.pretrain.setup import RECIPES, recipe_help

    for name, row in RECIPES.items():
        assert row.name == name and row.source and row.preset in PRESETS
        family = PRESETS[row.preset].get("model_type", "bert")
        assert set(row.heads) <= set(FAMILIES[family].heads), name  # its own preset can run it
        cfg = row.masking_config()  # the shares and span parameters are a valid masking
        assert cfg.exact_count == (not row.dynamic) and name in recipe_help()
    electra = RECIPES["electra"].masking_config()
    assert (electra.mask_token_prob, electra.random_token_prob, RECIPES["electra"].generator_size) == (0.85, 0, 0.25)
    hint = typing.get_type_hints(pretrain_cmd, include_extras=True)["recipe"]
    choices = typing.get_args(typing.get_args(typing.get_args(hint)[0])[0])
    assert choices == tuple(RECIPES)
    path = Path(__file__).parents[1] / "scripts" / "compare_recipes.py"
    spec = importlib.util.spec_from_file_location("compare_recipes_rows", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.RECIPES is RECIPES


def test_the_docs_recipe_table_is_the_rows():
    from pathlib import Path

    from bertkit.pretrain.setup import recipe_table

    page = (Path(__file__).parents[1] / "docs" / "pretraining.md").read_text(encoding="utf-8")
    assert recipe_table() in page, "docs/pretraining.md: paste `python -m bertkit.pretrain.setup`'s table"


def test_a_recipe_runs_on_any_family_with_its_heads():
    from bertkit.errors import BertkitError
    from bertkit.pretrain.setup import resolve_recipe

    roberta_on_bert = resolve_recipe("roberta", "bert-mini-chinese")  # MLM alone on a BERT
    assert (roberta_on_bert.preset, roberta_on_bert.objective, roberta_on_bert.beta2) == (
        "bert-mini-chinese",
        "full",
        0.98,
    )
    assert resolve_recipe("albert", "bert-mini-chinese").objective == "sop"  # SOP through BERT's NSP head
    assert resolve_recipe(preset="electra-small-chinese").name == "electra"  # a family's own recipe by default
    assert resolve_recipe(preset="albert-tiny-chinese").name == "albert"
    with pytest.raises(BertkitError, match="BERT has no replaced-token-detection"):
        resolve_recipe("electra", "bert-mini-chinese")
    with pytest.raises(BertkitError, match="ELECTRA has no sentence-pair"):
        resolve_recipe("bert", "electra-small-chinese")
    assert resolve_recipe("bert", "electra-small-chinese", objective="full").heads == ("mlm",)


def test_albert_pieces_train_a_bert_and_continued_electra_needs_its_generator(tmp_path, capsys):
    from bertkit.cli import main
    from bertkit.hf import save_pretrained

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "".join(
            f"第{i}天我们去北京。天气很好，大家都很高兴！\n今天学习了新的知识。明天还要继续努力。\n\n"
            for i in range(40)
        ),
        encoding="utf-8",
    )
    common = f"--corpus {corpus} --cache-dir {tmp_path / 'cache'} --steps 2 --batch-size 4 --max-seq-length 32 "
    common += "--eval-every 100 --vocab-size 200 --num-hidden-layers 1 --hidden-size 64 --precision fp32"
    argv = f"pretrain --out {tmp_path / 'run'} --recipe albert --preset bert-mini-chinese {common}"
    assert main(argv.split()) == 0
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForPreTraining"]  # SOP in NSP's head
    folder = tmp_path / "electra"
    disc = from_preset("electra-small", vocab_size=200, num_hidden_layers=1, hidden_size=64, num_attention_heads=1)
    disc = type(disc)(**{**disc.__dict__, "intermediate_size": 128})
    tok = __import__("bertkit.tokenizer", fromlist=["Tokenizer"]).Tokenizer.train(
        iter(corpus.read_text(encoding="utf-8").split()), vocab_size=200, show_progress=False
    )
    save_pretrained(folder, BertEncoder(disc), {"rtd": RTDHead(disc)}, tok)
    capsys.readouterr()
    assert main(f"pretrain --out {tmp_path / 'again'} --init {folder} {common.split('--vocab-size')[0]}".split()) == 2
    assert "continued ELECTRA pretraining needs its generator" in capsys.readouterr().err
