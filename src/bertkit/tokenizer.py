"""BERT tokenization: WordPiece over the Rust `tokenizers` library.

`Tokenizer` wraps a `tokenizers.Tokenizer` (the engine: normalization, pre-tokenization, WordPiece and
`[CLS] A [SEP] B [SEP]` templating all run in Rust) and adds what bertkit needs around it: loading a Google /
Hugging Face `vocab.txt`, `tokenizer.json` or model folder, training a new vocabulary from raw text, batch
encoding to padded tensors, and saving a folder that `transformers.AutoTokenizer` loads with identical ids.

Choices:
- BERT's basic tokenization is `BertNormalizer` (clean control characters, put spaces around every CJK
  character, lower-case, strip accents) + `BertPreTokenizer` (split on whitespace and punctuation). So a
  Chinese character is always its own word; whole-word masking segments Chinese with jieba elsewhere.
- Truncation and padding are per call, never stored state: a `tokenizer.json` may carry its own (the
  all-MiniLM-L6-v2 one pads and truncates everything to 128), and those are switched off on load.
- The special tokens are BERT's five and must all be in the vocabulary; a trained vocabulary puts them at
  ids 0..4 in the order of `Tokenizer.special_tokens`.
- Every user mistake (a missing file, a broken vocabulary, a `max_length` with no room for a token of each
  text beside the special tokens) is a `BertkitError` naming the file or argument.
- One entry point for every family: `Tokenizer.from_folder` (and `from_file`) called on `Tokenizer` itself
  reads any folder as `AutoTokenizer` does, returning RoBERTa's `ByteLevelBPETokenizer` for a BPE one. Other
  families subclass `Tokenizer` in their own modules, so this one cannot import them (test_structure refuses
  the circle, lazy imports too): a subclass defining `recognises(path)` joins `Tokenizer.families` on import.
  `bertkit.Tokenizer` resolves through `bertkit.vocab`, which imports every family, so the public name always
  knows them all; this module alone knows WordPiece, and names any other model it meets.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tokenizers
import torch
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers

from bertkit.errors import BertkitError, DataError


@dataclass
class Encoding:
    """One encoded sequence (or pair). For a pair, `word_ids` and `offsets` restart in the second text."""

    ids: list[int]
    tokens: list[str]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]]  # character spans into the original text; (0, 0) for special tokens
    word_ids: list[int | None]  # index of the pre-token (word) each token came from; None for specials
    special_tokens_mask: list[int]

    @classmethod
    def _from_backend(cls, e: tokenizers.Encoding) -> Encoding:
        ids, types, mask, special = e.ids, e.type_ids, e.attention_mask, e.special_tokens_mask
        return cls(ids, e.tokens, types, mask, e.offsets, e.word_ids, special)


class Tokenizer:
    special_tokens = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    pair_special_count = 3  # [CLS] A [SEP] B [SEP]
    families: list[type[Tokenizer]] = []  # the non-WordPiece kinds from_folder may return, in import order

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "recognises" in vars(cls):  # a family with its own file format, not a WordPiece variant
            Tokenizer.families.append(cls)

    @classmethod
    def family_of(cls, path: Path) -> type[Tokenizer]:
        """The class that reads `path` (a folder or a tokenizer.json): the first family that recognises it,
        else WordPiece, whose loader names what is missing."""
        return next((f for f in Tokenizer.families if f.recognises(path)), Tokenizer)

    def __init__(self, backend: tokenizers.Tokenizer, lowercase: bool = True, model_max_length: int = 512):
        """Take over `backend` (it is modified in place) and give it BERT's template and decoder."""
        for token in self.special_tokens:
            if backend.token_to_id(token) is None:
                raise BertkitError(
                    f"tokenizer vocabulary has no {token!r} token; BERT needs all of {self.special_tokens}"
                )
        normalizer = backend.normalizer
        if isinstance(normalizer, normalizers.BertNormalizer) and normalizer.lowercase != lowercase:
            raise BertkitError(f"lowercase={lowercase} disagrees with the backend's BertNormalizer; flip it")
        backend.no_truncation()
        backend.no_padding()
        # Registered as special so that "[MASK]" in text maps to its id and decode() can skip them; tokens
        # already in the vocabulary keep their ids.
        backend.add_special_tokens(self._added_tokens())
        # special_tokens is (pad, unk, cls, sep, mask) in that order: "[CLS]" for BERT, "<s>" for RoBERTa.
        pad, unk, cls_, sep, mask = self.special_tokens
        self.pad_token_id: int = backend.token_to_id(pad)
        self.unk_token_id: int = backend.token_to_id(unk)
        self.cls_token_id: int = backend.token_to_id(cls_)
        self.sep_token_id: int = backend.token_to_id(sep)
        self.mask_token_id: int = backend.token_to_id(mask)
        backend.post_processor = self._post_processor()
        backend.decoder = self._decoder()
        self.backend = backend
        self.lowercase = lowercase
        self.model_max_length = model_max_length
        self._truncating: dict[int, tokenizers.Tokenizer] = {}  # max_length -> copy of backend that truncates

    def _added_tokens(self) -> list[AddedToken]:
        return [AddedToken(t, special=True, normalized=False) for t in self.special_tokens]

    def _post_processor(self) -> processors.PostProcessor:
        """BERT's `[CLS] A [SEP] B [SEP]`, token types 0 then 1."""
        return processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_token_id), ("[SEP]", self.sep_token_id)],
        )

    def _decoder(self) -> decoders.Decoder:
        return decoders.WordPiece(prefix="##")

    # ---- loading ------------------------------------------------------------------------------------------

    @classmethod
    def from_vocab(
        cls,
        vocab_file: str | Path,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
    ) -> Tokenizer:
        """A Google / Hugging Face `vocab.txt` (one token per line, id = line number) with BERT's pipeline.

        `strip_accents=None` strips accents exactly when lower-casing, as the original BERT does.
        """
        vocab = _read_vocab(Path(vocab_file))
        model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100)
        backend = tokenizers.Tokenizer(model)
        backend.normalizer = _bert_normalizer(lowercase, strip_accents, tokenize_chinese_chars)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        return cls(backend, lowercase=lowercase)

    @classmethod
    def from_file(cls, tokenizer_json: str | Path) -> Tokenizer:
        """A `tokenizer.json`; any padding or truncation stored in it is switched off. On `Tokenizer` itself,
        a file of another family (a BPE model) gives that family's tokenizer."""
        if cls is Tokenizer and (family := cls.family_of(Path(tokenizer_json))) is not Tokenizer:
            return family.from_file(tokenizer_json)
        return cls._from_json(Path(tokenizer_json), {})

    @classmethod
    def from_folder(cls, folder: str | Path) -> Tokenizer:
        """Any family's tokenizer folder, as `AutoTokenizer` reads it: on `Tokenizer` itself, a RoBERTa folder
        (byte-level BPE) gives a `ByteLevelBPETokenizer`, anything else is read as WordPiece (BERT, ALBERT_zh,
        ELECTRA): `tokenizer.json`, else `vocab.txt`.

        `tokenizer_config.json`, when present, sets do_lower_case / strip_accents / tokenize_chinese_chars /
        model_max_length; like `transformers`, its normalizer settings win over those in `tokenizer.json`.
        """
        folder = Path(folder)
        if cls is Tokenizer and (family := cls.family_of(folder)) is not Tokenizer:
            return family.from_folder(folder)
        json_file, vocab_file = folder / "tokenizer.json", folder / "vocab.txt"
        if not (json_file.is_file() or vocab_file.is_file()):
            raise BertkitError(_no_tokenizer(folder))
        config_file = folder / "tokenizer_config.json"
        config = _read_json(config_file) if config_file.is_file() else {}
        if json_file.is_file():
            tok = cls._from_json(json_file, config)
        else:
            tok = cls.from_vocab(
                vocab_file,
                lowercase=config.get("do_lower_case", True),
                strip_accents=config.get("strip_accents"),
                tokenize_chinese_chars=config.get("tokenize_chinese_chars", True),
            )
        tok.model_max_length = read_model_max_length(config, config_file, tok.model_max_length)
        return tok

    @classmethod
    def _from_json(cls, path: Path, config: dict[str, Any]) -> Tokenizer:
        if not path.is_file():
            raise BertkitError(f"{path}: no such tokenizer.json")
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust loader raises a bare Exception with serde's message
            raise BertkitError(f"{path}: not a valid tokenizer.json ({e})") from e
        if not isinstance(backend.model, models.WordPiece):
            kind = type(backend.model).__name__
            fix = "import bertkit.vocab first (bertkit.Tokenizer does): it adds RoBERTa's byte-level BPE"
            if kind != "BPE" or Tokenizer.families:
                fix = "bertkit reads WordPiece (BERT, ELECTRA) and byte-level BPE (RoBERTa): use a model with one"
            raise BertkitError(f"{path}: a {kind} tokenizer, which {cls.__name__} does not read; {fix}")
        _require_special_tokens(backend.get_vocab(), path)
        old = backend.normalizer
        if isinstance(old, normalizers.BertNormalizer):
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=old.clean_text,
                handle_chinese_chars=config.get("tokenize_chinese_chars", old.handle_chinese_chars),
                strip_accents=config.get("strip_accents", old.strip_accents),
                lowercase=config.get("do_lower_case", old.lowercase),
            )
            return cls(backend, lowercase=backend.normalizer.lowercase)
        return cls(backend, lowercase=config.get("do_lower_case", True))

    # ---- training -----------------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        files: Sequence[str | Path] | str | Path | Iterable[str],
        vocab_size: int = 21128,
        min_frequency: int = 2,
        lowercase: bool = True,
        limit_alphabet: int = 20000,
        show_progress: bool = False,
    ) -> Tokenizer:
        """Train a WordPiece vocabulary on raw text, one document or sentence per line.

        `files` is a path or a list/tuple of paths; any other iterable (a generator, `iter(lines)`) is taken
        as the lines themselves. Lines are streamed to the Rust trainer, never all held in memory. Because
        the normalizer splits every CJK character off as its own word, Chinese text yields one token per
        character and English text yields words and `##` pieces. `limit_alphabet` is large so that no
        Chinese character of the corpus is dropped from the alphabet.
        """
        if vocab_size <= len(cls.special_tokens):
            raise BertkitError(f"--vocab-size {vocab_size}: it counts the 5 special tokens, so it must be more than 5")
        check_vocab_size(vocab_size)
        if min_frequency < 0:
            raise BertkitError(f"--min-frequency must be 0 or more, got {min_frequency}")
        if isinstance(files, (str, Path, list, tuple)):
            paths = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
            for p in paths:
                if not p.is_file():
                    raise DataError(f"{p}: no such corpus file (to train on lines in memory, pass iter(lines))")
            lines, source = read_lines(paths), ", ".join(str(p) for p in paths)
        else:
            lines, source = iter(files), "the given lines"
        normalizer = _bert_normalizer(lowercase, None, True)
        pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # Pass 1: the continuation pieces ("##c" for every character that occurs inside a word), with the lines
        # spooled to a temporary file for pass 2, so a stream is read once and memory stays flat.
        continuations: set[str] = set()
        seen = 0
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            for line in lines:
                if not line.strip():
                    continue
                seen += 1
                spool.write(line.replace("\n", " ") + "\n")
                for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
                    continuations.update(word[1:])
            if seen == 0:
                raise DataError(f"{source}: no text to train a vocabulary on (every line is empty)")
            spool.seek(0)
            # Why: the Rust trainer creates each "##c" when a hash map's iteration first reaches it, so their
            # ids (which break ties between merges of equal count) differ from run to run, and so did the
            # vocabulary (tokenizers issue #1794; 7,923 vs 7,927 tokens here on the same corpus). Given up
            # front, sorted, they have fixed ids, and the same corpus gives the same vocabulary every time.
            pieces = [f"##{c}" for c in sorted(continuations)]
            trainer = trainers.WordPieceTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=[*cls.special_tokens, *pieces],  # ids in this order, from 0
                limit_alphabet=limit_alphabet,
                continuing_subword_prefix="##",
                show_progress=show_progress,
            )
            trainer_backend = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
            trainer_backend.normalizer, trainer_backend.pre_tokenizer = normalizer, pre_tokenizer
            trainer_backend.train_from_iterator((line.rstrip("\n") for line in spool), trainer)
        # The pieces were handed over as "special" tokens only to fix their ids: rebuild a plain WordPiece
        # model from the vocabulary, so that "##a" in text is not matched as an added token.
        vocab = trainer_backend.get_vocab(with_added_tokens=True)
        model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100)
        backend = tokenizers.Tokenizer(model)
        backend.normalizer, backend.pre_tokenizer = normalizer, pre_tokenizer
        return cls(backend, lowercase=lowercase)

    # ---- saving -------------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json.

        `transformers` rebuilds a BertTokenizer from vocab + tokenizer_config.json, so the config carries
        every normalizer setting; each file is written whole to a temporary file, then renamed into place.
        """
        if not (
            isinstance(self.backend.normalizer, normalizers.BertNormalizer)
            and isinstance(self.backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
            and isinstance(self.backend.model, models.WordPiece)
        ):
            raise BertkitError("only a BERT WordPiece pipeline can be saved as a BertTokenizer folder")
        vocab = self.get_vocab()
        by_id = sorted(vocab, key=vocab.__getitem__)
        if [vocab[t] for t in by_id] != list(range(len(by_id))) or any("\n" in t for t in by_id):
            raise BertkitError("vocabulary ids have gaps or a token contains a newline; vocab.txt cannot hold it")
        names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
        special_map = dict(zip(names, self.special_tokens, strict=True))
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.model_max_length,
            **special_map,
        }
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / "vocab.txt", "".join(t + "\n" for t in by_id))
        _write_atomic(folder / "tokenizer.json", self.backend.to_str(pretty=True))
        _write_atomic(folder / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        _write_atomic(folder / "special_tokens_map.json", json.dumps(special_map, indent=2) + "\n")

    # ---- vocabulary ---------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        # Counts added tokens too: the embedding table must cover every id the tokenizer can produce.
        return self.backend.get_vocab_size(with_added_tokens=True)

    def min_length(self, is_pair: bool = False) -> int:
        """The shortest max_length that keeps a token of each text beside the special tokens: 3 ([CLS] A [SEP]),
        5 for a BERT pair, 6 for a RoBERTa one (<s> A </s></s> B </s>)."""
        return self.pair_special_count + 2 if is_pair else 3

    def check_max_length(self, max_length: int, is_pair: bool = False, shown: str | None = None) -> None:
        """Refuse a max_length that would cut a whole text away: truncating longest-first below `min_length`
        leaves [CLS] [SEP] alone (and below the special tokens, tokenizers silently does not truncate at all).
        `shown` names it in the message, e.g. "--max-length 2"."""
        if max_length >= self.min_length(is_pair):
            return
        cls_, sep = self.special_tokens[2], self.special_tokens[3]
        what = "both texts" if is_pair else "the text"
        need = (
            f"at least {self.min_length(True)} for a pair"
            if is_pair
            else f"at least 3; {self.min_length(True)} for a pair"
        )
        raise BertkitError(
            f"{shown or f'max_length={max_length}'} leaves no room for {what} beside {cls_} and {sep} ({need})"
        )

    @property
    def all_special_ids(self) -> list[int]:
        return [self.backend.token_to_id(t) for t in self.special_tokens]

    @property
    def strip_accents(self) -> bool | None:
        return getattr(self.backend.normalizer, "strip_accents", None)

    @property
    def tokenize_chinese_chars(self) -> bool:
        return getattr(self.backend.normalizer, "handle_chinese_chars", True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(i)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_ids_to_tokens(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]
        tokens = [self.backend.id_to_token(i) for i in ids]
        for i, token in zip(ids, tokens, strict=True):
            if token is None:
                raise BertkitError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return tokens

    # ---- encoding -----------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of `text`, without [CLS]/[SEP]."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode(
        self,
        text: str,
        pair: str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> Encoding:
        """Encode one text or pair; `max_length` counts the special tokens and truncates longest-first."""
        backend = self._backend_for(max_length, pair is not None, add_special_tokens)
        return Encoding._from_backend(backend.encode(text, pair, add_special_tokens=add_special_tokens))

    def encode_batch(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> list[Encoding]:
        return [Encoding._from_backend(e) for e in self._encode_raw(texts, pairs, max_length, add_special_tokens)]

    def encode_ids(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Only the ids of each text, no truncation: the fast path for tokenising a corpus.

        `encode_batch_fast` skips the offsets, and not building `Encoding` objects skips converting
        tokens, offsets and word ids to Python, which otherwise costs as much as the tokenisation.
        """
        backend = self._backend_for(None, False, add_special_tokens)
        return [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)]

    def __call__(
        self,
        texts: str | list[str],
        pairs: str | list[str] | None = None,
        max_length: int | None = None,
        padding: bool | str = True,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = "pt",
    ) -> dict[str, Any]:
        """Batch-encode to input_ids / token_type_ids / attention_mask, each (B, T), padded on the right.

        `padding=True` or "longest" pads to the longest sequence, "max_length" to `max_length`, then up to a
        multiple of `pad_to_multiple_of`. A single string is a batch of one. `return_tensors=None` gives
        lists of lists instead of torch.long tensors.
        """
        if isinstance(texts, str):
            texts, pairs = [texts], None if pairs is None else [pairs]
        if padding not in (True, False, "longest", "max_length"):
            raise BertkitError(f"padding={padding!r}: use True, False, 'longest' or 'max_length'")
        if padding == "max_length" and max_length is None:
            raise BertkitError("padding='max_length' needs max_length")
        if return_tensors not in ("pt", None):
            raise BertkitError(f"return_tensors={return_tensors!r}: use 'pt' or None")
        if not texts:
            raise BertkitError("no texts to encode")
        # Read only ids and type ids from the Rust encodings: tokens and offsets would cost Python strings.
        encodings = self._encode_raw(texts, pairs, max_length, True)
        ids, type_ids = [e.ids for e in encodings], [e.type_ids for e in encodings]
        lengths = [len(x) for x in ids]
        if padding:
            target = max_length if padding == "max_length" else max(lengths)
            if pad_to_multiple_of:
                target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
            ids = [x + [self.pad_token_id] * (target - len(x)) for x in ids]
            type_ids = [x + [0] * (target - len(x)) for x in type_ids]
            mask = [[1] * n + [0] * (target - n) for n in lengths]
        else:
            if return_tensors == "pt" and len(set(lengths)) > 1:
                raise BertkitError("padding=False with texts of different lengths: pad, or use return_tensors=None")
            mask = [[1] * n for n in lengths]
        batch = {"input_ids": ids, "token_type_ids": type_ids, "attention_mask": mask}
        if return_tensors == "pt":
            return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
        return batch

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def _encode_raw(
        self, texts: list[str], pairs: list[str] | None, max_length: int | None, add_special_tokens: bool
    ) -> list[tokenizers.Encoding]:
        if pairs is not None and len(pairs) != len(texts):
            raise BertkitError(f"{len(texts)} texts but {len(pairs)} pairs; give one pair per text")
        backend = self._backend_for(max_length, pairs is not None, add_special_tokens)
        inputs = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        return backend.encode_batch(inputs, add_special_tokens=add_special_tokens)  # Rust, parallel

    def _backend_for(self, max_length: int | None, is_pair: bool, add_special_tokens: bool) -> tokenizers.Tokenizer:
        """The backend that truncates to `max_length`: a cached copy, so that encoding never changes shared
        state (truncation is a setting on a `tokenizers.Tokenizer`) and stays safe across threads."""
        if max_length is None:
            return self.backend
        if add_special_tokens:
            self.check_max_length(max_length, is_pair)
        elif max_length < (2 if is_pair else 1):
            raise BertkitError(f"max_length={max_length} leaves no room for a token of each text")
        if max_length not in self._truncating:
            copy = tokenizers.Tokenizer.from_str(self.backend.to_str())
            copy.enable_truncation(max_length, strategy="longest_first")
            self._truncating[max_length] = copy
        return self._truncating[max_length]


# ---- helpers ----------------------------------------------------------------------------------------------


def _bert_normalizer(lowercase: bool, strip_accents: bool | None, chinese: bool) -> normalizers.Normalizer:
    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=chinese, strip_accents=strip_accents, lowercase=lowercase
    )


def _read_vocab(path: Path) -> dict[str, int]:
    """vocab.txt -> {token: line index}. Strict: a duplicate would make ids differ between tools."""
    if not path.is_file():
        raise BertkitError(f"{path}: no such vocabulary file")
    raw = path.read_bytes().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the final newline ends the last line rather than starting an empty one
    vocab: dict[str, int] = {}
    for i, line in enumerate(raw):
        try:
            token = line.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as e:
            raise BertkitError(
                f"{path}: line {i + 1} is not UTF-8 ({e.reason}); re-save the vocabulary as UTF-8"
            ) from e
        if token in vocab:
            raise BertkitError(f"{path}: token {token!r} on line {i + 1} duplicates line {vocab[token] + 1}; remove it")
        vocab[token] = i
    _require_special_tokens(vocab, path)
    return vocab


def _no_tokenizer(folder: Path) -> str:
    """The one-line error for a folder with no tokenizer bertkit reads, naming what it does hold."""
    if not folder.is_dir():
        return f"{folder}: does not exist; expected a model folder with tokenizer.json, vocab.txt or vocab.json"
    sentencepiece = [n for n in ("spiece.model", "sentencepiece.bpe.model") if (folder / n).is_file()]
    if sentencepiece:
        return (
            f"{folder}: holds {sentencepiece[0]}, a SentencePiece tokenizer (ALBERT, XLNet, XLM-R), which bertkit "
            "does not read; use a model with a WordPiece vocab.txt or a byte-level BPE vocab.json + merges.txt"
        )
    return (
        f"{folder}: holds neither tokenizer.json nor vocab.txt (BERT) nor vocab.json + merges.txt (RoBERTa); "
        "pass the folder that save_pretrained wrote, or train one with `bertkit tokenizer train`"
    )


def _require_special_tokens(vocab: dict[str, int], path: Path) -> None:
    for token in Tokenizer.special_tokens:
        if token not in vocab:
            raise BertkitError(
                f"{path}: vocabulary has no {token!r} token; BERT needs {', '.join(Tokenizer.special_tokens)}"
            )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BertkitError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise BertkitError(f"{path}: expected a JSON object")
    return data


def read_model_max_length(config: dict[str, Any], path: Path, default: int) -> int:
    """tokenizer_config.json's model_max_length: a whole number of at least 3 ([CLS] a token [SEP]); absent or
    null keeps `default`. transformers writes a huge number (about 1e30) for "no limit"; it passes."""
    value = config.get("model_max_length")
    if value is None:
        return default
    whole = (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value == int(value)
    )
    if not whole or value < 3:
        raise BertkitError(
            f"{path}: model_max_length should be a whole number of at least 3 (room for a token beside the two "
            f"special tokens), got {json.dumps(value)}; fix it or leave it out"
        )
    return int(value)


MAX_VOCAB_SIZE = 1_000_000  # 30k (BERT) to 250k (XLM-R) in practice; the Rust trainer reserves memory for it


def check_vocab_size(vocab_size: int) -> None:
    if vocab_size > MAX_VOCAB_SIZE:
        raise BertkitError(
            f"--vocab-size {vocab_size:,} is more than {MAX_VOCAB_SIZE:,}; BERT's vocabularies hold 21k-30k tokens"
        )


def read_lines(paths: list[Path]) -> Iterator[str]:
    """The lines of text files, each checked to be UTF-8 (a bad one is named by file and line)."""
    for path in paths:
        with open(path, "rb") as f:  # bytes, so that a bad line can be reported with its number
            for n, line in enumerate(f, 1):
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}: line {n} is not UTF-8 ({e.reason}); convert the corpus to UTF-8") from e


def _write_atomic(path: Path, text: str) -> None:
    # A crash mid-write leaves the old file, never half of a new one. (Not mkstemp: its files are mode 0600.)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
