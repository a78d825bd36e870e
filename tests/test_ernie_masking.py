"""ERNIE 1.0's knowledge masking: phrase and entity units masked whole (never split, one 80/10/10 draw each, in the
15% budget), entities from the People's Daily tags or a file, and the `ernie` recipe's token -> phrase -> entity
stages as phases of one run that resumes exactly across a stage boundary."""

import json
import shutil

import numpy as np
import pytest
from helpers import one_thread  # noqa: F401 - module-wide single thread

from bertkit.cli import main
from bertkit.pretrain.dataset import MASKING_UNITS, PretrainingData, Vocab, split_documents
from bertkit.pretrain.masking import IGNORE_INDEX, MaskingConfig
from bertkit.pretrain.shards import builtin_entities, entity_file, tagged_entities

LINES = 300  # the People's Daily's first lines: the sample the tests build their corpus from


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The first tagged lines, their text as a plain corpus (one paragraph a line), its entity file, shards."""
    from bertkit.builtin import peoples_daily_tagged
    from bertkit.pretrain.shards import MarkedDocuments, build_shards, word_starts
    from bertkit.tokenizer import Tokenizer

    d = tmp_path_factory.mktemp("ernie")
    tagged = [line for line, _ in zip(peoples_daily_tagged(), range(LINES), strict=False)]
    texts = ["".join(word.removeprefix("[") for word, _ in line) for line in tagged]
    (d / "corpus.txt").write_text("\n".join(texts) + "\n", "utf-8")
    (d / "entities.txt").write_text("\n".join(sorted(tagged_entities(tagged))) + "\n", "utf-8")
    tok = Tokenizer.train(iter(texts), vocab_size=1500, min_frequency=1)
    tok.save(str(d / "tok"))
    shards = build_shards(str(d / "corpus.txt"), tok, d / "cache", progress=False)
    vocab = Vocab.of(tok)
    entities = entity_file(str(d / "entities.txt"))
    docs = MarkedDocuments(
        shards,
        word_starts(shards, vocab.tokens, False),
        word_starts(shards, vocab.tokens, False, entities),
    )
    return {"dir": d, "tagged": tagged, "texts": texts, "docs": docs, "vocab": vocab, "entities": entities}


def _entity_spans(line):
    """The [start, end) character spans of the tagged entities of one line, as `tagged_entities` joins them."""
    spans, pos, person = [], 0, None
    for word, tag in line:
        word, tag = word.removeprefix("["), tag.split("]")[0]
        if tag == "nr":
            person = (person[0] if person else pos, pos + len(word))
        else:
            if person:
                spans.append(person)
                person = None
            if tag in ("ns", "nt"):
                spans.append((pos, pos + len(word)))
        pos += len(word)
    if person:
        spans.append(person)
    return [(s, e) for s, e in spans if e - s > 1]


@pytest.mark.parametrize("source", ["file", "builtin"])
def test_the_tagged_entities_are_never_cut(sample, source):
    seg = entity_file(str(sample["dir"] / "entities.txt")) if source == "file" else builtin_entities()
    n_entities, n_cut = 0, 0
    for line, text in zip(sample["tagged"], sample["texts"], strict=True):
        cuts = set(np.cumsum([len(w) for w in seg.cut(text)]).tolist())
        for s, e in _entity_spans(line):
            n_entities += 1
            n_cut += any(s < c < e for c in cuts)
    assert n_entities > 200
    # Two entities of one length that overlap (秘书长安南: 长安 and 安南 are both tagged) leave no rule to choose;
    # over the whole corpus 48 of 50,602 tagged entities are cut so, none in this sample.
    assert n_cut == 0


class _Units:
    """A masking unit that masks nothing and hands back the units the dataset gives a real one ("unit_ids")."""

    words = True

    def __init__(self, marks):
        self.marks = marks

    def __call__(self, tokens, lengths, word_ids, cfg, vocab, rng):
        from bertkit.pretrain.dataset import Masked

        units = np.full(tokens.shape, -1)
        for row, w in enumerate(word_ids):
            units[row, : len(w)] = w
        return Masked(tokens, np.full(tokens.shape, IGNORE_INDEX), {"unit_ids": units})


@pytest.mark.parametrize("unit", ["phrase", "entity"])
def test_units_are_masked_whole_with_one_draw_in_the_budget(sample, unit):
    docs, vocab = sample["docs"], sample["vocab"]
    ids = np.arange(len(docs))
    data = PretrainingData(docs, vocab, ids, max_seq_length=64, unit=unit, chunk_tokens=0)
    # the same instances in the same rows (masking draws last), with their units
    marks = "entities" if unit == "entity" else "words"
    plain = PretrainingData(docs, vocab, ids, max_seq_length=64, unit=_Units(marks), chunk_tokens=0)
    n_chosen = n_candidates = multi = 0
    kinds = []
    for version in range(4):  # static copies: more units for the 80/10/10 shares
        epoch, units = data.epoch(version), plain.epoch(version).token_fields["unit_ids"]
        for row in range(len(epoch)):
            n = int(epoch.lengths[row])
            chosen = epoch.labels[row, :n] != IGNORE_INDEX
            u = units[row, :n]
            for w in np.unique(u[chosen]):
                at = u == w
                assert chosen[at].all(), (version, row, w)  # never split
                seen, original = epoch.input_ids[row, :n][at], epoch.labels[row, :n][at]
                mask, keep = (seen == vocab.mask_id).all(), (seen == original).all()
                assert mask or keep or not (seen == vocab.mask_id).any()  # one draw for the whole unit
                kinds.append("mask" if mask else "keep" if keep else "random")
                multi += int(at.sum()) > 1
            n_chosen += int(chosen.sum())
            n_candidates += int((u >= 0).sum())
    assert abs(n_chosen / n_candidates - 0.15) < 0.01
    assert multi > 200  # units of several tokens were masked
    shares = {k: kinds.count(k) / len(kinds) for k in ("mask", "random", "keep")}
    assert abs(shares["mask"] - 0.8) < 0.02 and abs(shares["random"] - 0.1) < 0.02, (shares, len(kinds))


def test_one_decision_per_unit_gives_80_10_10_per_unit():
    """Synthetic units of 1-4 tokens: every unit's tokens share one draw, and the unit shares are 80/10/10."""
    rng = np.random.default_rng(0)
    vocab = Vocab(size=1000, pad_id=0, cls_id=2, sep_id=3, mask_id=4, special_ids=(0, 1, 2, 3, 4))
    N, L = 400, 128
    tokens = rng.integers(5, 1000, size=(N, L)).astype(np.int32)
    lengths = np.full(N, L)
    word_ids = [np.repeat(np.arange(L), rng.integers(1, 5, size=L))[:L] for _ in range(N)]
    out = MASKING_UNITS["phrase"](tokens, lengths, word_ids, MaskingConfig(max_predictions_per_seq=None), vocab, rng)
    kinds = []
    for row in range(N):
        chosen = out.labels[row] != IGNORE_INDEX
        assert chosen.sum() == round(L * 0.15) or chosen.sum() <= round(L * 0.15)
        for w in np.unique(word_ids[row][chosen]):
            at = word_ids[row] == w
            assert chosen[at].all()
            seen, original = out.input_ids[row, at], tokens[row, at]
            mask, keep = (seen == 4).all(), (seen == original).all()
            assert mask or keep or not (seen == 4).any()
            kinds.append("mask" if mask else "keep" if keep else "random")
    shares = {k: kinds.count(k) / len(kinds) for k in ("mask", "random", "keep")}
    assert abs(shares["mask"] - 0.8) < 0.02 and abs(shares["random"] - 0.1) < 0.02 and abs(shares["keep"] - 0.1) < 0.02
    budget = sum(int((o != IGNORE_INDEX).sum()) for o in out.labels) / (N * L)
    assert abs(budget - 0.15) < 0.01


def test_same_seed_same_bits(sample):
    docs, vocab = sample["docs"], sample["vocab"]
    train, _ = split_documents(len(docs), 0.1, 0)
    a = PretrainingData(docs, vocab, train, max_seq_length=64, unit="entity", seed=3).epoch(1)
    b = PretrainingData(docs, vocab, train, max_seq_length=64, unit="entity", seed=3).epoch(1)
    assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.labels, b.labels)


ERNIE = (
    "pretrain --recipe ernie --corpus {d}/corpus.txt --entities {d}/entities.txt --tokenizer {d}/tok "
    "--cache-dir {d}/cache --max-seq-length 64 --num-hidden-layers 2 --hidden-size 64 --batch-size 8 --lr 2e-3 "
    "--warmup 2 --precision fp32 --dropout 0 --log-every 1 --eval-every 1000 --keep-checkpoints 10 --seed 0"
)


def _losses(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["mlm_loss"] + r["nsp_loss"] for r in rows if "step" in r}


@pytest.mark.slow
def test_the_ernie_recipe_runs_its_stages_and_the_loss_falls(sample, tmp_path):
    argv = ERNIE.format(d=sample["dir"]) + f" --out {tmp_path}/run --steps 45 --save-every 1000"
    assert main(argv.split()) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [p["unit"] for p in summary["phases"]] == ["token", "phrase", "entity"]
    assert [p["end_step"] for p in summary["phases"]] == [15, 30, 45]
    loss = _losses(tmp_path / "run")
    assert np.mean([loss[s] for s in range(41, 46)]) < np.mean([loss[s] for s in range(1, 6)]) - 1.0


@pytest.mark.slow
def test_a_run_resumed_at_a_stage_boundary_gives_the_same_losses(sample, tmp_path):
    argv = ERNIE.format(d=sample["dir"]) + " --steps 12 --save-every 4 --out {out}"
    assert main(argv.format(out=tmp_path / "full").split()) == 0
    full = _losses(tmp_path / "full")
    # the step-8 checkpoint ends the phrase stage: the resumed run starts the entity stage afresh
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    step8 = tmp_path / "full" / "checkpoints" / "step-00000008"
    shutil.copytree(step8, resumed / "checkpoints" / step8.name)
    assert main((argv.format(out=resumed) + " --resume").split()) == 0
    again = _losses(resumed)
    for step in range(9, 13):
        assert again[step] == full[step], step
