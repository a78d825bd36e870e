"""GPT-2 on the one encoder: the causal mask, the folder both ways against transformers' GPT2LMHeadModel, the KV
cache, sampling, and `bertkit pretrain --recipe gpt` / `bertkit generate` from the CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from helpers import one_thread  # noqa: F401 - an autouse fixture

from bertkit.cli import main
from bertkit.config import BertConfig, from_preset
from bertkit.errors import BertkitError, ConfigError
from bertkit.hf import Checkpoint, build_heads, load_pretrained, save_pretrained
from bertkit.model import BertEncoder, KVCache
from bertkit.use.generate import Sampling, generate_ids, lm_logits, next_token

transformers = pytest.importorskip("transformers")


def hf_gpt2(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        **{"vocab_size": 99, "n_positions": 40, "n_embd": 32, "n_layer": 2, "n_head": 4, **overrides}
    )
    return transformers.GPT2LMHeadModel(config).eval()


def ours(seed: int = 0, **overrides) -> Checkpoint:
    torch.manual_seed(seed)
    config = from_preset("gpt2-tiny-chinese", vocab_size=99, max_position_embeddings=40, **overrides)
    encoder = BertEncoder(config).eval()
    return Checkpoint(config, encoder, build_heads(config, ["lm"]))


@pytest.mark.parametrize("overrides", [{}, {"activation_function": "gelu", "n_inner": 48, "layer_norm_epsilon": 1e-6}])
def test_a_transformers_gpt2_folder_loads_with_the_same_logits(tmp_path, overrides):
    hf = hf_gpt2(**overrides)
    hf.save_pretrained(tmp_path)
    ckpt = load_pretrained(tmp_path)
    assert set(ckpt.heads) == {"lm"} and ckpt.config.pad_token_id is None
    ids = torch.randint(0, 99, (3, 17))
    with torch.no_grad():
        torch.testing.assert_close(lm_logits(ckpt, ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_our_gpt2_folder_loads_in_transformers_with_the_same_logits(tmp_path):
    ckpt = ours()
    with torch.no_grad():  # not the initial values: biases and LayerNorms all different from their defaults
        for p in ckpt.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_pretrained(tmp_path, ckpt.encoder, ckpt.heads)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 99, (2, 23))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, lm_logits(ckpt, ids), atol=1e-5, rtol=0)
    # and back: the same tensors
    again = load_pretrained(tmp_path)
    for (name, a), b in zip(ckpt.encoder.state_dict().items(), again.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_an_older_gpt2_file_with_mask_buffers_and_no_prefix_loads(tmp_path):
    """OpenAI's gpt2 on the hub: a bare GPT2Model's names (no "transformer.") with each layer's causal-mask buffers."""
    from safetensors.torch import save_file

    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    state = {
        k.removeprefix("transformer."): v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"
    }
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 40, 40))
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, str(tmp_path / "model.safetensors"))
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("n_inner")  # as the original file: 4 x n_embd
    (tmp_path / "config.json").write_text(json.dumps(config | {"architectures": ["GPT2LMHeadModel"], "n_ctx": 40}))
    ckpt = load_pretrained(tmp_path)
    assert ckpt.config.intermediate_size == 128 and set(ckpt.heads) == {"lm"}
    ids = torch.randint(0, 99, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(lm_logits(ckpt, ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_gpt2_settings_the_encoder_does_not_compute_are_refused(tmp_path):
    hf_gpt2(scale_attn_by_inverse_layer_idx=True).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="scale_attn_by_inverse_layer_idx"):
        load_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="pad_token_id' is null"):
        BertConfig(pad_token_id=None)  # a BERT pads with a token of its vocabulary


def test_a_position_never_sees_the_future():
    """The gradient of output t with respect to the input at t' > t is exactly zero, and not zero for t' <= t."""
    ckpt = ours()
    ids = torch.randint(0, 99, (2, 12))
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["x"] = output

    ckpt.encoder.embeddings.register_forward_hook(keep)
    out = ckpt.encoder(ids).last_hidden_state
    t = 5
    (out[:, t] * torch.randn(out.shape[-1])).sum().backward()  # a plain sum of a LayerNorm's output is constant
    grad = captured["x"].grad  # (2, 12, H)
    assert torch.count_nonzero(grad[:, t + 1 :]) == 0
    assert all(grad[:, s].abs().sum() > 0 for s in range(t + 1))


def test_the_kv_cache_gives_the_logits_of_the_whole_sequence():
    ckpt = ours()
    ids = torch.randint(0, 99, (1, 15))
    with torch.no_grad():
        whole = lm_logits(ckpt, ids)
        cache = KVCache(ckpt.config.num_hidden_layers)
        parts = [ckpt.encoder(ids[:, :6], cache=cache).last_hidden_state]  # a prompt of 6, then one at a time
        parts += [ckpt.encoder(ids[:, t : t + 1], cache=cache).last_hidden_state for t in range(6, 15)]
        stepped = torch.nn.functional.linear(torch.cat(parts, 1), ckpt.encoder.embeddings.word_embeddings.weight)
    assert cache.length == 15
    torch.testing.assert_close(stepped, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "sampling", [Sampling(), Sampling(sample=True), Sampling(sample=True, temperature=0.7, top_k=10, top_p=0.9)]
)
def test_generation_with_the_cache_equals_generation_without_it(sampling):
    ckpt = ours(seed=1)
    prompt = torch.randint(5, 99, (4,)).tolist()
    with_cache = generate_ids(ckpt, prompt, 30, sampling, seed=3, use_cache=True)
    without = generate_ids(ckpt, prompt, 30, sampling, seed=3, use_cache=False)
    assert with_cache == without and len(with_cache) == 30
    assert generate_ids(ckpt, prompt, 30, sampling, seed=3) == with_cache  # the same seed, the same text


def test_generation_stops_at_the_end_token_and_refuses_what_cannot_run():
    ckpt = ours(seed=1)
    prompt = [5, 6, 7]
    greedy = generate_ids(ckpt, prompt, 20)
    eos = greedy[4]
    stopped = generate_ids(ckpt, prompt, 20, eos_id=eos)
    assert stopped == greedy[: greedy.index(eos) + 1]
    with pytest.raises(
        BertkitError, match="the prompt: its 3 tokens .* pass the model.s 40 positions; give --max-new-tokens 37"
    ):
        generate_ids(ckpt, prompt, 38)
    with pytest.raises(BertkitError, match="prompt is empty"):
        generate_ids(ckpt, [], 5)
    for bad, match in (
        (dict(temperature=0.0), "--temperature"),
        (dict(top_p=0.0), "--top-p"),
        (dict(top_p=1.2), "--top-p"),
        (dict(top_k=-1), "--top-k"),
    ):
        with pytest.raises(BertkitError, match=match):
            Sampling(sample=True, **bad)


def test_top_k_and_top_p_draw_only_from_the_kept_tokens():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    g = torch.Generator().manual_seed(0)

    def draws(sampling, n=2000):
        return torch.stack([next_token(logits, sampling, g) for _ in range(n)]).flatten()

    assert set(draws(Sampling(sample=True, top_k=2)).tolist()) == {0, 1}
    assert set(draws(Sampling(sample=True, top_p=0.5)).tolist()) == {0}  # 0.5 alone reaches 0.5
    assert set(draws(Sampling(sample=True, top_p=0.81)).tolist()) == {0, 1, 2}  # 0.8 does not reach 0.81
    assert set(draws(Sampling(sample=True, top_p=1e-300), 50).tolist()) == {0}  # rounds to 0 in float32: one kept
    share = (draws(Sampling(sample=True), 4000) == 3).float().mean()
    assert 0.03 < share < 0.07  # the model's own 5%
    cold = draws(Sampling(sample=True, temperature=0.25), 2000)
    assert (cold == 0).float().mean() > 0.8  # (0.5/0.3)^4 = 7.7 to 1 over the next one
    assert next_token(logits, Sampling(), g).item() == 0  # greedy


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from bertkit.builtin import peoples_daily_raw_lines

    d = tmp_path_factory.mktemp("gpt")
    lines = [line for line, _ in zip(peoples_daily_raw_lines(), range(300), strict=False)]
    (d / "corpus.txt").write_text("\n".join(lines) + "\n", "utf-8")
    return d


def run_gpt(corpus, out, steps, *extra):
    argv = (
        f"pretrain --out {out} --recipe gpt --preset gpt2-tiny-chinese --corpus {corpus}/corpus.txt "
        f"--cache-dir {corpus}/cache --vocab-size 1500 --max-seq-length 64 --batch-size 8 --steps {steps} "
        "--hidden-size 64 --precision fp32 --lr 2e-3 --warmup 5 --log-every 1 --eval-every 1000 --save-every 20 "
        "--seed 0"
    ).split() + list(extra)
    assert main(argv) == 0


def lm_losses(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lm_loss"] for r in rows if "step" in r}


def test_gpt_pretrains_from_the_cli_with_a_falling_loss_and_resumes_to_the_same_bits(corpus, tmp_path, capsys):
    run_gpt(corpus, tmp_path / "full", 40)
    curve = lm_losses(tmp_path / "full")
    assert sum(curve[s] for s in range(36, 41)) / 5 < sum(curve[s] for s in range(1, 6)) / 5 - 1.0, curve
    assert "perplexity" in capsys.readouterr().out
    folder = tmp_path / "full" / "model"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    ckpt = load_pretrained(folder)
    ids = torch.tensor([ckpt.tokenizer("今天天气很好")["input_ids"][0].tolist()])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, lm_logits(ckpt, ids), atol=1e-5, rtol=0)

    # stopped after the step-20 checkpoint, resumed: the same losses and the same weights, bit for bit
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000020", resumed / "checkpoints" / "step-00000020")
    rows = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("\n".join(r for r in rows if json.loads(r).get("step", 0) <= 20) + "\n")
    for name in ("train_config.json",):
        shutil.copy(tmp_path / "full" / name, resumed / name)
    run_gpt(corpus, resumed, 40, "--resume")
    assert lm_losses(resumed) == curve
    assert (resumed / "model" / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()

    # and generate continues a prompt from the folder
    capsys.readouterr()
    assert main(["generate", str(folder), "今天", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("今天")


def test_recipes_and_families_that_do_not_fit_are_refused_naming_both(tmp_path, capsys):
    for argv, message in (
        ("--preset gpt2-tiny-chinese --recipe bert", "GPT-2 has no masked-LM"),
        ("--preset bert-tiny-chinese --recipe gpt", "BERT has no left-to-right language-model"),
        ("--recipe gpt --masking wwm", "give --masking none"),
        ("--recipe bert --masking none", "masks nothing"),
        ("--recipe gpt --objective nsp", "on full sentences"),
    ):
        assert main(f"pretrain --out {tmp_path}/x --corpus peoples-daily {argv}".split()) == 2
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "kind,cls",
    [
        ("classification", "ForSequenceClassification"),
        ("tagging", "ForTokenClassification"),
        ("qa", "ForQuestionAnswering"),
    ],
)
def test_fine_tuning_heads_load_both_ways_with_the_same_outputs(tmp_path, kind, cls):
    """Classification reads the last real token (padding on the right, found through the padding id as
    transformers finds it); tagging and QA read every token."""
    from bertkit.finetune.model import build_model, load_task_model, save_task_model
    from bertkit.tokenizer import Tokenizer

    tok = Tokenizer.train(iter(["今天天气很好", "明天下雨了吧"] * 5), vocab_size=99, min_frequency=1)
    ckpt = ours()
    config = replace(ckpt.config, vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    save_pretrained(tmp_path / "lm", BertEncoder(config), build_heads(config, ["lm"]), tok)
    labels = ["neg", "pos"] if kind == "classification" else ["O", "B-LOC", "I-LOC"]
    model, _ = build_model(tmp_path / "lm", kind, labels if kind != "qa" else [])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_task_model(tmp_path / "task", model, tok)
    hf = getattr(transformers, "GPT2" + cls).from_pretrained(tmp_path / "task").eval()
    batch = tok(["今天天气很好", "明天"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    again, _ = load_task_model(tmp_path / "task")
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask)
        theirs = out.logits if kind != "qa" else torch.stack([out.start_logits, out.end_logits], -1)
        for m in (model.eval(), again):
            got = m(ids, mask)
            real = mask.bool() if kind != "classification" else slice(None)
            torch.testing.assert_close(got[real], theirs[real], atol=1e-5, rtol=0)


def test_the_auxiliary_lm_loss_adds_lambda_times_the_next_token_loss(tmp_path, capsys):
    from bertkit.finetune.model import build_model, set_dropout
    from bertkit.tokenizer import Tokenizer

    tok = Tokenizer.train(iter(["今天天气很好", "明天下雨了吧"] * 5), vocab_size=99, min_frequency=1)
    config = replace(ours().config, vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    save_pretrained(tmp_path / "lm", BertEncoder(config), build_heads(config, ["lm"]), tok)
    model, _ = build_model(tmp_path / "lm", "classification", ["neg", "pos"])
    set_dropout(model, 0.0)
    model.train()
    batch = tok(["今天天气很好", "明天"]) | {"labels": torch.tensor([0, 1])}
    plain = model.loss_sum(model(batch["input_ids"], batch["attention_mask"]), batch)
    model.lm_weight = 0.5
    with_lm = model.loss_sum(model(batch["input_ids"], batch["attention_mask"]), batch)
    logits = lm_logits(Checkpoint(model.encoder.config, model.encoder), batch["input_ids"])
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    keep = mask[:, 1:] & mask[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1][keep], ids[:, 1:][keep])  # the mean over tokens
    torch.testing.assert_close(with_lm, plain + 0.5 * 2 * nll)  # λ × the mean × the batch's 2 examples
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the loop runs it: the forward in bf16, the loss outside
        logits = model(batch["input_ids"], batch["attention_mask"])
    assert torch.isfinite(model.loss_sum(logits, batch))

    bert = replace(config, model_type="bert", norm_position="post", type_vocab_size=2)
    save_pretrained(tmp_path / "bert", BertEncoder(bert), {}, tok)
    for folder, task, message in (
        ("bert", "sentiment", "the auxiliary language-model loss is GPT's"),
        ("lm", "peoples-daily-ner", "--lm-weight adds a loss per example"),
    ):
        argv = f"finetune --model {tmp_path}/{folder} --task {task} --out {tmp_path}/ft --lm-weight 0.5"
        assert main(argv.split()) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "ft").exists()


def test_pairs_read_both_ways_add_the_logits_of_the_two_orders(tmp_path, capsys):
    """GPT-1's similarity: A-B and B-A through the model, the two added; transformers gives each order's logits,
    and their sum is the saved model's output."""
    from bertkit.finetune.model import load_task_model
    from bertkit.tokenizer import Tokenizer

    tok = Tokenizer.train(iter(["今天天气很好", "明天下雨了吧"] * 5), vocab_size=99, min_frequency=1)
    config = replace(ours().config, vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    save_pretrained(tmp_path / "lm", BertEncoder(config), build_heads(config, ["lm"]), tok)
    rows = [("今天", "天气很好", "same"), ("明天", "下雨了", "other")] * 8
    (tmp_path / "pairs.csv").write_text("text,text_b,label\n" + "".join(f"{a},{b},{y}\n" for a, b, y in rows), "utf-8")
    data = f"--task classification --train {tmp_path}/pairs.csv --dev {tmp_path}/pairs.csv --test {tmp_path}/pairs.csv"
    argv = f"finetune --model {tmp_path}/lm --out {tmp_path}/ft {data} --text-pair-column text_b --pair-orders both"
    assert main([*argv.split(), "--epochs", "1", "--lr", "1e-3", "--max-seq-length", "16"]) == 0
    folder = next((tmp_path / "ft").rglob("config.json")).parent
    assert json.loads((folder / "config.json").read_text())["pair_orders"] == "both"
    model, _ = load_task_model(folder)
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(folder).eval()
    ab, ba = tok(["今天", "明天"], ["天气很好", "下雨了"]), tok(["天气很好", "下雨了"], ["今天", "明天"])
    T = max(ab["input_ids"].shape[1], ba["input_ids"].shape[1])

    def padded(x):
        return torch.nn.functional.pad(x, (0, T - x.shape[1]))

    ids = torch.stack([padded(ab["input_ids"]), padded(ba["input_ids"])], 1)  # (B, 2, T)
    mask = torch.stack([padded(ab["attention_mask"]), padded(ba["attention_mask"])], 1)
    with torch.no_grad():
        theirs = hf(**{k: ab[k] for k in ("input_ids", "attention_mask")}).logits
        theirs = theirs + hf(**{k: ba[k] for k in ("input_ids", "attention_mask")}).logits
        torch.testing.assert_close(model(ids, mask), theirs, atol=1e-5, rtol=0)
    capsys.readouterr()
    bert = replace(config, model_type="bert", norm_position="post", type_vocab_size=2)
    save_pretrained(tmp_path / "bert", BertEncoder(bert), {}, tok)
    argv = f"finetune --model {tmp_path}/bert --out {tmp_path}/ft2 {data} --text-pair-column text_b --pair-orders both"
    assert main(argv.split()) == 2
    assert "reads a pair both ways already" in capsys.readouterr().err


def test_multiple_choice_saves_as_gpt2_double_heads_with_the_same_scores(tmp_path):
    """GPT-1's multiple choice: one pass per choice, a score at each choice's last token; transformers'
    GPT2DoubleHeadsModel gives the same scores when told where the last tokens are (mc_token_ids)."""
    from bertkit.finetune.model import build_model, load_task_model, save_task_model
    from bertkit.tokenizer import Tokenizer

    tok = Tokenizer.train(iter(["今天天气很好", "明天下雨了吧"] * 5), vocab_size=99, min_frequency=1)
    config = replace(ours().config, vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    save_pretrained(tmp_path / "lm", BertEncoder(config), build_heads(config, ["lm"]), tok)
    model, _ = build_model(tmp_path / "lm", "multiple_choice", [])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_task_model(tmp_path / "mc", model, tok)
    assert json.loads((tmp_path / "mc" / "config.json").read_text())["architectures"] == ["GPT2DoubleHeadsModel"]
    hf = transformers.GPT2DoubleHeadsModel.from_pretrained(tmp_path / "mc").eval()
    batch = tok(["今天 天气", "今天 下雨了吧", "明天 很好"])
    ids, mask = batch["input_ids"].view(1, 3, -1), batch["attention_mask"].view(1, 3, -1)
    again, _ = load_task_model(tmp_path / "mc")
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, mc_token_ids=mask.sum(-1) - 1).mc_logits
        for m in (model.eval(), again):
            torch.testing.assert_close(m(ids, mask), theirs, atol=1e-5, rtol=0)


def test_a_gpt2_folder_with_gpt2s_own_tokenizer_loads_and_generates(tmp_path, capsys):
    """OpenAI's layout: byte-level BPE with one special token, <|endoftext|>, and nothing added around a text."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from bertkit.bpe import GPT2BPETokenizer

    rust = RustTokenizer(models.BPE())
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    rust.train_from_iterator(["the cat sat on the mat", "今天天气很好 hello world"] * 20, trainer)
    end = "<|endoftext|>"
    fast = transformers.GPT2TokenizerFast(tokenizer_object=rust, bos_token=end, eos_token=end, unk_token=end)
    fast.save_pretrained(tmp_path)
    hf_gpt2(vocab_size=len(fast), n_positions=64).save_pretrained(tmp_path)
    ckpt = load_pretrained(tmp_path)
    assert isinstance(ckpt.tokenizer, GPT2BPETokenizer)
    for text in ("the cat sat", "今天天气很好 hello", "a\\tb  c"):
        assert ckpt.tokenizer.encode(text).ids == fast(text)["input_ids"], text
    assert ckpt.tokenizer.cls_token_id == ckpt.tokenizer.sep_token_id == fast.eos_token_id
    assert main(["generate", str(tmp_path), "the cat", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("the cat")


def test_a_tiny_temperature_is_greedy_not_a_crash():
    from bertkit.use.generate import Sampling, next_token

    logits = torch.tensor([[1.0, 3.0, 2.0], [50.0, -50.0, 49.0]])
    tiny = Sampling(sample=True, temperature=1e-300)
    assert next_token(logits, tiny, torch.Generator().manual_seed(0)).tolist() == [1, 0]
