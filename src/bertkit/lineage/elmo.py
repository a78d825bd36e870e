"""ELMo (Peters et al. 2018; seed 003): a bidirectional LSTM language model whose layers, mixed by weights a task
learns, give each token a vector in its context.

As the notes write it: a forward LM maximises Σ log p(t_k | t_1..t_{k-1}), a backward LM Σ log p(t_k |
t_{k+1}..t_N), trained together with the token representation and the softmax shared between the directions,
each direction with its own LSTMs:

    x_k = token representation of t_k                              (layer 0)
    h→_{k,j} = LSTM→_j(h→_{·,j-1})_k,  h←_{k,j} = LSTM←_j(h←_{·,j-1})_k   j = 1..L (residual from layer 2 on)
    p(t_{k+1} | t_1..t_k) = softmax(W h→_{k,L} + b),  p(t_{k-1} | t_k..t_N) = softmax(W h←_{k,L} + b)
    ELMo_k = γ · Σ_j softmax(s)_j · h_{k,j},   h_{k,0} = [x_k; x_k],  h_{k,j} = [h→_{k,j}; h←_{k,j}]

Choices, and how they differ from the paper's 2 × 4096-unit LSTMP with a character CNN over English words:
- character-level, for Chinese: a token is one character, and its representation a learned embedding (the
  paper's character CNN exists to give unseen English words a vector; a Chinese character vocabulary has almost
  none) projected to the LSTM width;
- L = 2 layers per direction of `hidden` units (no projection layer), dropout between layers;
- each sentence is wrapped in <S> … </S>: the forward LM reads <S> t_1..t_N and predicts t_1..t_N </S>, the
  backward LM reads it reversed; so neither direction ever sees the token it predicts (tested by gradient);
- the scalar mix is over the L + 1 = 3 layer vectors (the 2L + 1 = 5 representations, each layer's two
  directions side by side), as the paper's equation 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from bertkit.errors import CheckpointError

SPECIALS = ("[PAD]", "[UNK]", "<S>", "</S>")
PAD, UNK, BOS, EOS = range(4)


@dataclass(frozen=True)
class ElmoConfig:
    vocab_size: int
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CheckpointError(f"ELMo config field '{name}' must be a whole number of at least 1, got {value!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise CheckpointError(f"ELMo config field 'dropout' must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class CharVocab:
    """Characters seen `min_count` times, most frequent first, after the four specials."""

    def __init__(self, chars: list[str]):
        self.tokens = [*SPECIALS, *chars]
        self.index = {c: i for i, c in enumerate(self.tokens)}

    @classmethod
    def build(cls, sentences: list[str], min_count: int, max_size: int | None = None) -> CharVocab:
        from collections import Counter

        counts = Counter(c for s in sentences for c in s if not c.isspace())
        ranked = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
        return cls(ranked[:max_size] if max_size else ranked)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, UNK) for c in text if not c.isspace()]

    def __len__(self) -> int:
        return len(self.tokens)


class BiLM(nn.Module):
    """The forward and backward LSTM language models over one shared token embedding and one shared softmax."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.config = config
        H = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=PAD)
        self.project = nn.Linear(config.embedding_size, H)  # x_k, the width of each direction
        self.forward_layers = nn.ModuleList(nn.LSTM(H, H, batch_first=True) for _ in range(config.num_layers))
        self.backward_layers = nn.ModuleList(nn.LSTM(H, H, batch_first=True) for _ in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.softmax = nn.Linear(H, config.vocab_size)  # shared by both directions

    def token_representation(self, ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.embed(ids))  # (B, T, H)

    def layers(self, ids: torch.Tensor, lengths: torch.Tensor, x: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[h_0, h_1, …, h_L], each (B, T, 2H): layer 0 is [x; x], layer j the two directions' LSTM states.

        `ids` (B, T) hold <S> t_1..t_N </S> then padding; the backward direction runs on each row reversed within
        its own length, so that padding never reaches a real position. `x` replaces the token representation
        (the gradient test passes one that requires grad)."""
        x = self.token_representation(ids) if x is None else x
        reverse = _reverse_index(lengths, ids.shape[1])  # (B, T)
        forward, backward = x, x.gather(1, reverse[..., None].expand_as(x))
        out = [torch.cat([x, x], -1)]
        for j, (f_lstm, b_lstm) in enumerate(zip(self.forward_layers, self.backward_layers, strict=True)):
            f, _ = f_lstm(self.dropout(forward))
            b, _ = b_lstm(self.dropout(backward))
            if j > 0:  # residual from the second layer on, as the paper
                f, b = f + forward, b + backward
            forward, backward = f, b
            out.append(torch.cat([f, b.gather(1, reverse[..., None].expand_as(b))], -1))  # back to reading order
        return out

    def loss(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean of the forward and backward LMs' cross-entropy over the real targets; with each direction's."""
        H = self.config.hidden_size
        top = self.dropout(self.layers(ids, lengths)[-1])  # (B, T, 2H)
        forward, backward = top[..., :H], top[..., H:]
        T = ids.shape[1]
        real = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
        # forward: the state at k predicts token k+1 (the last real position, </S>, predicts nothing)
        f_pred, f_gold, f_mask = forward[:, :-1], ids[:, 1:], real[:, 1:]
        # backward: the state at k predicts token k-1 (<S> predicts nothing)
        b_pred, b_gold, b_mask = backward[:, 1:], ids[:, :-1], real[:, 1:]
        f_loss = nn.functional.cross_entropy(self.softmax(f_pred[f_mask]), f_gold[f_mask])
        b_loss = nn.functional.cross_entropy(self.softmax(b_pred[b_mask]), b_gold[b_mask])
        loss = (f_loss + b_loss) / 2
        return loss, {"forward_loss": float(f_loss.detach()), "backward_loss": float(b_loss.detach())}


def _reverse_index(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) gather index that reverses each row's first `length` positions and leaves its padding in place."""
    pos = torch.arange(T)[None, :].expand(len(lengths), T)
    flipped = lengths[:, None] - 1 - pos
    return torch.where(pos < lengths[:, None], flipped, pos)


class ScalarMix(nn.Module):
    """γ · Σ_j softmax(s)_j · h_j over the biLM's layers: the weights a task learns (the paper's equation 1)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.scalars = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.scalars, 0)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        w = self.weights()
        return self.gamma * sum(w[j] * h for j, h in enumerate(layers))


def batch(vocab: CharVocab, texts: list[str], max_chars: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T), lengths (B,)): each text as <S> chars </S>, cut to `max_chars` characters, padded right."""
    rows = [[BOS, *vocab.encode(t)[:max_chars], EOS] for t in texts]
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [PAD] * (T - len(r)) for r in rows])
    return ids, torch.tensor([len(r) for r in rows])


def save_bilm(folder: Path, model: BiLM, vocab: CharVocab) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "elmo.safetensors"))
    (folder / "elmo_config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab.tokens), encoding="utf-8")


def load_bilm(folder: str | Path) -> tuple[BiLM, CharVocab]:
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in ("elmo_config.json", "elmo.safetensors", "vocab.txt"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: no {name}; give the model folder `bertkit elmo train` wrote")
    try:
        fields = json.loads((folder / "elmo_config.json").read_text(encoding="utf-8"))
        config = ElmoConfig(**fields)
    except (ValueError, TypeError) as e:  # not JSON, not an object, unknown or missing fields
        raise CheckpointError(f"{folder}/elmo_config.json is not an ELMo config ({str(e)[:80]})") from None
    try:
        tokens = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        raise CheckpointError(f"{folder}/vocab.txt is not UTF-8 text") from None
    if tuple(tokens[:4]) != SPECIALS or len(tokens) != config.vocab_size:
        raise CheckpointError(f"{folder}/vocab.txt does not match elmo_config.json ({config.vocab_size} tokens)")
    model = BiLM(config)
    try:
        model.load_state_dict(load_file(str(folder / "elmo.safetensors")))
    except Exception as e:  # a damaged file, or tensors of another shape than the config says
        raise CheckpointError(
            f"{folder}/elmo.safetensors does not hold this config's weights ({str(e)[:80]})"
        ) from None
    vocab = CharVocab(tokens[4:])
    return model.eval(), vocab


@torch.no_grad()
def word_layers(model: BiLM, vocab: CharVocab, text: str, word: str) -> torch.Tensor:
    """(L + 1, 2H): `word`'s vectors in `text` at every layer of the biLM (0: [x; x]), each the mean over its
    characters (first occurrence; whitespace is not read)."""
    from bertkit.errors import BertkitError

    source, target = "".join(text.split()), "".join(word.split())
    start = source.find(target) if target else -1
    if start < 0:
        raise BertkitError(f"{word!r} does not occur in {text!r}")
    ids, lengths = batch(vocab, [source], max_chars=len(source))
    layers = model.eval().layers(ids, lengths)
    span = slice(start + 1, start + 1 + len(target))  # +1: <S> comes first
    return torch.stack([h[0, span].mean(0) for h in layers])
