"""`bertkit attention`: the probabilities against `transformers`' for every family, rows that sum to 1 and give
padding nothing, pictures whose tick labels are the tokens and whose Chinese is drawn with glyphs, the JSON, and
the command's files (a failure leaves the folder as it was)."""

import json

import numpy as np
import pytest
import torch
import transformers
from helpers import model_folders, one_thread  # noqa: F401  (tiny models: one thread)

from bertkit.cli import main
from bertkit.fonts import cjk_font, cjk_rc
from bertkit.hf import load_pretrained
from bertkit.use import attention
from bertkit.use.attention import AttentionMaps, attention_maps, attention_probs, draw_head, head_figure

SMALL = dict(vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48)
SMALL.update(max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
FAMILIES = {
    "bert": lambda: transformers.BertModel(transformers.BertConfig(**SMALL)),
    "albert": lambda: transformers.AlbertModel(transformers.AlbertConfig(**SMALL, embedding_size=16)),
    "roberta": lambda: transformers.RobertaModel(
        transformers.RobertaConfig(**SMALL, pad_token_id=1, type_vocab_size=1, layer_norm_eps=1e-5)
    ),
    "electra": lambda: transformers.ElectraModel(transformers.ElectraConfig(**SMALL, embedding_size=16)),
    "ernie": lambda: transformers.ErnieModel(
        transformers.ErnieConfig(**SMALL, use_task_id=True, task_type_vocab_size=3)
    ),
    "distilbert": lambda: transformers.DistilBertModel(
        transformers.DistilBertConfig(
            vocab_size=97, dim=32, n_layers=3, n_heads=4, hidden_dim=48, max_position_embeddings=40, dropout=0.0
        )
    ),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return model_folders(tmp_path_factory.mktemp("models")).parent


@pytest.mark.parametrize("family", FAMILIES)
def test_probabilities_match_transformers_for_every_family(tmp_path, family):
    torch.manual_seed(0)
    hf = FAMILIES[family]()
    hf.config._attn_implementation = "eager"  # the probabilities written out, as bertkit's hand-written path
    hf.save_pretrained(tmp_path)
    ids = torch.randint(5, 97, (2, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    ids[mask == 0] = hf.config.pad_token_id
    with torch.no_grad():
        theirs = torch.stack(hf.eval()(input_ids=ids, attention_mask=mask, output_attentions=True).attentions, 1)
    ours = attention_probs(load_pretrained(tmp_path, tokenizer=False).encoder, ids, mask)
    assert ours.shape == (2, 3, 4, 11, 11)
    real = mask.bool()[:, None, None, :, None].expand_as(theirs).numpy()  # rows of real queries
    np.testing.assert_allclose(ours[real], theirs.numpy()[real], atol=1e-5)


def test_rows_sum_to_one_and_padding_gets_nothing(folders):
    maps = attention_maps(folders / "plain", "我们今天在北京开会", pad_to=20)
    T = len(maps.tokens)
    assert T == 20 and maps.probs.shape == (2, 4, 20, 20)
    assert maps.kinds[0] == "special" and maps.kinds[-1] == "pad" and maps.tokens[-1] == "[PAD]"
    assert maps.kinds.count("text") == 9 and maps.kinds.count("special") == 2 and maps.kinds.count("pad") == 9
    np.testing.assert_allclose(maps.probs.sum(-1), 1.0, atol=1e-5)
    pad = np.array(maps.kinds) == "pad"
    assert np.all(maps.probs[..., pad] == 0.0)  # no query, padded or not, looks at padding
    unpadded = attention_maps(folders / "plain", "我们今天在北京开会")
    n = len(unpadded.tokens)
    np.testing.assert_allclose(maps.probs[:, :, :n, :n], unpadded.probs, atol=1e-6)


def test_a_pair_is_two_segments(folders):
    maps = attention_maps(folders / "plain", "今天很好", pair="the cat")
    assert maps.tokens == ["[CLS]", "今", "天", "很", "好", "[SEP]", "the", "cat", "[SEP]"]
    assert maps.segments == [0] * 6 + [1] * 3
    assert [i for i, k in enumerate(maps.kinds) if k == "special"] == [0, 5, 8]


def _maps(tokens: list[str]) -> AttentionMaps:
    T = len(tokens)
    probs = np.random.default_rng(0).dirichlet(np.ones(T), size=(2, 3, T)).astype(np.float32)
    kinds = ["special"] + ["text"] * (T - 2) + ["special"]
    return AttentionMaps(tokens, kinds, [0] * T, probs, "m", "".join(tokens[1:-1]))


def test_the_heat_maps_tick_labels_are_the_tokens():
    import matplotlib
    import matplotlib.pyplot as plt

    tokens = ["[CLS]", "今", "天", "天", "气", "很", "好", "[SEP]"]
    with matplotlib.rc_context(cjk_rc()):
        fig = head_figure(_maps(tokens), 2, 3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    assert ax.get_title() == "layer 2, head 3"
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), _maps(tokens).probs[1, 2])
    plt.close(fig)


def test_chinese_is_drawn_with_glyphs_not_boxes(tmp_path):
    if cjk_font() is None:
        pytest.skip("no CJK font installed (make test installs fonts-wqy-microhei where apt-get allows)")
    maps = _maps(["[CLS]", "今", "天", "天", "气", "很", "好", "苹", "果", "[SEP]"])
    assert draw_head(maps, 1, 1, tmp_path / "zh.png") == []
    assert attention.draw_layer(maps, 2, tmp_path / "grid.png") == []
    # the check can fail: the default Latin font has no 今 and matplotlib says so
    boxes = draw_head(maps, 1, 1, tmp_path / "boxes.png", rc={"font.family": ["DejaVu Sans"]})
    assert boxes and any("CJK UNIFIED IDEOGRAPH-4ECA" in m for m in boxes)  # 今


def test_the_command_writes_pictures_json_and_page(folders, tmp_path, capsys):
    out = tmp_path / "att"
    assert (
        main(["attention", str(folders / "plain"), "今天很好", "--out", str(out), "--head", "2", "--pad-to", "9"]) == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "attention.html",
        "attention.json",
        "layer-01-head-02.png",
        "layer-01.png",
        "layer-02-head-02.png",
        "layer-02.png",
    ]
    data = json.loads((out / "attention.json").read_text("utf-8"))
    assert data["tokens"] == ["[CLS]", "今", "天", "很", "好", "[SEP]", "[PAD]", "[PAD]", "[PAD]"]
    assert data["layers"] == 2 and data["heads"] == 4
    maps = attention_maps(folders / "plain", "今天很好", pad_to=9)
    np.testing.assert_allclose(np.array(data["attentions"]), maps.probs, atol=1e-6)
    page = (out / "attention.html").read_text("utf-8")
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # nothing from a network
    assert "9 tokens: [CLS] 今 天 很 好 [SEP] [PAD] [PAD] [PAD]" in capsys.readouterr().out


def test_a_failed_drawing_leaves_the_folder_as_it_was(folders, tmp_path, monkeypatch):
    out = tmp_path / "att"
    assert main(["attention", str(folders / "plain"), "今天很好", "--out", str(out), "--layer", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(attention, "draw_head", broken)
    argv = ["attention", str(folders / "plain"), "我们开会", "--out", str(out), "--layer", "1", "--head", "1"]
    assert main(argv) == 2  # an OSError is the user's disk: one line, exit 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no scratch folder left either
