"""RoBERTa's tokenizer: byte-level BPE (GPT-2's) over the Rust `tokenizers` library, with the same interface
as the WordPiece `Tokenizer` so that every command takes either.

    text ─► bytes mapped to 256 printable symbols (ByteLevel), split GPT-2's way (spaces kept, as "Ġ")
         ─► BPE merges ─► <s> A </s>   or   <s> A </s></s> B </s>   (token types all 0)

Choices:
- No normaliser and no unknown token: every byte has a symbol, so any text (Chinese, emoji, accents,
  control characters) encodes and decodes back exactly; `<unk>` exists only because the format has it.
- The five special tokens are RoBERTa's; a trained vocabulary numbers them as fairseq does, `<s>` 0,
  `<pad>` 1, `</s>` 2, `<unk>` 3, then `<mask>` 4 (roberta-base has it last, 50264; where it sits does
  not matter, only that the model's pad_token_id is the tokenizer's). `<mask>` swallows the space before
  it (lstrip), as RoBERTa's, so "a <mask> b" masks the word " b"-style token the model was trained on.
- `add_prefix_space=False`, RoBERTa's default: the first word of a text has no "Ġ".
- A folder is written as transformers writes one: vocab.json + merges.txt + tokenizer.json +
  tokenizer_config.json (RobertaTokenizer), each to a temporary file first, then renamed into place.
- Training is deterministic: the same lines give the same merges and ids (a test trains twice in two
  processes and compares the files).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors, trainers

from bertkit.errors import BertkitError, DataError
from bertkit.tokenizer import Tokenizer, _read_json, check_vocab_size, read_model_max_length

TRAIN_ORDER = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4 of a trained vocabulary


class ByteLevelBPETokenizer(Tokenizer):
    special_tokens = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")  # (pad, unk, cls, sep, mask), as the base class
    pair_special_count = 4  # <s> A </s></s> B </s>

    def __init__(self, backend: tokenizers.Tokenizer, model_max_length: int = 512, add_prefix_space: bool = False):
        self.add_prefix_space = add_prefix_space
        super().__init__(backend, lowercase=False, model_max_length=model_max_length)

    def _added_tokens(self) -> list[AddedToken]:
        return [AddedToken(t, special=True, normalized=False, lstrip=t == "<mask>") for t in self.special_tokens]

    def _post_processor(self) -> processors.PostProcessor:
        return processors.RobertaProcessing(
            ("</s>", self.sep_token_id),
            ("<s>", self.cls_token_id),
            trim_offsets=True,
            add_prefix_space=self.add_prefix_space,
        )

    def _decoder(self) -> decoders.Decoder:
        return decoders.ByteLevel()

    # ---- loading ------------------------------------------------------------------------------------------

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """A folder or tokenizer.json holds byte-level BPE when its tokenizer.json model is BPE, or (no
        tokenizer.json) when it has vocab.json and no vocab.txt; `Tokenizer.from_folder` asks this. GPT-2's own
        vocabulary (`<|endoftext|>`, no `<s>`) is `GPT2BPETokenizer`'s."""
        vocab = _bpe_vocab(Path(path))
        return vocab is not None and not _is_gpt2(vocab)

    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path, **kwargs) -> ByteLevelBPETokenizer:
        vocab_json, merges_txt = Path(vocab_json), Path(merges_txt)
        for path in (vocab_json, merges_txt):
            if not path.is_file():
                raise BertkitError(
                    f"{path}: missing; a byte-level BPE (RoBERTa) tokenizer needs both vocab.json and merges.txt"
                )
        try:
            vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BertkitError(f"{vocab_json}: not valid JSON ({e})") from None
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise BertkitError(f"{vocab_json}: expected a JSON object of token -> id")
        _require(vocab, vocab_json)
        try:
            model = models.BPE.from_file(str(vocab_json), str(merges_txt))
        except Exception as e:  # the Rust loader raises a bare Exception naming the bad line
            raise BertkitError(f"{merges_txt}: not a valid merges file ({e})") from None
        return cls(_backend(model, kwargs.get("add_prefix_space", False)), **kwargs)

    @classmethod
    def from_file(cls, tokenizer_json: str | Path, **kwargs) -> ByteLevelBPETokenizer:
        path = Path(tokenizer_json)
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - serde's message
            raise BertkitError(f"{path}: not a valid tokenizer.json ({e})") from None
        cls._require(backend.get_vocab(), path)
        return cls(backend, **kwargs)

    @classmethod
    def _require(cls, vocab: dict[str, int], path: Path) -> None:
        _require(vocab, path)

    @classmethod
    def from_folder(cls, folder: str | Path) -> ByteLevelBPETokenizer:
        """A RoBERTa folder: tokenizer.json, else vocab.json + merges.txt; tokenizer_config.json's
        model_max_length and add_prefix_space are read."""
        folder = Path(folder)
        config_file = folder / "tokenizer_config.json"
        config = _read_json(config_file) if config_file.is_file() else {}
        kwargs = {"add_prefix_space": bool(config.get("add_prefix_space", False))}
        if (folder / "tokenizer.json").is_file():
            tok = cls.from_file(folder / "tokenizer.json", **kwargs)
        else:
            tok = cls.from_files(folder / "vocab.json", folder / "merges.txt", **kwargs)
        limit = read_model_max_length(config, config_file, tok.model_max_length)
        if limit < 10**6:  # transformers writes 1e30 for "no limit"
            tok.model_max_length = limit
        return tok

    # ---- training -----------------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        lines: Iterable[str],
        vocab_size: int = 8000,
        min_frequency: int = 2,
        show_progress: bool = False,
        **_ignored: Any,
    ) -> ByteLevelBPETokenizer:
        """Byte-level BPE merges learnt from `lines` (streamed to the Rust trainer), RoBERTa's special tokens
        first. The 256 byte symbols are always in the vocabulary, so `vocab_size` must exceed 261."""
        check_vocab_size(vocab_size)
        if vocab_size <= 256 + len(TRAIN_ORDER):
            raise BertkitError(
                f"--vocab-size {vocab_size}: a byte-level BPE vocabulary holds 256 byte symbols and 5 special "
                "tokens before any merge, so it must be more than 261"
            )
        if min_frequency < 0:
            raise BertkitError(f"--min-frequency must be 0 or more, got {min_frequency}")
        backend = _backend(models.BPE(), add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(TRAIN_ORDER),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        seen = 0

        def text():
            nonlocal seen
            for line in lines:
                if line.strip():
                    seen += 1
                    yield line.rstrip("\n")

        backend.train_from_iterator(text(), trainer)
        if seen == 0:
            raise DataError("no text to train a vocabulary on (every line is empty)")
        return cls(backend)

    # ---- saving -------------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        """vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
        if not isinstance(self.backend.model, models.BPE):
            raise BertkitError("only a BPE model can be saved as a RobertaTokenizer folder")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
        special_map = dict(zip(names, self.special_tokens, strict=True)) | {"bos_token": "<s>", "eos_token": "</s>"}
        config = {
            "tokenizer_class": "RobertaTokenizer",
            "add_prefix_space": self.add_prefix_space,
            "trim_offsets": True,
            "errors": "replace",
            "model_max_length": self.model_max_length,
            **special_map,
            # How each special token matches in text; transformers reads this when it builds the tokenizer
            # from vocab.json + merges.txt (without it, <mask> would not take the space before it).
            "added_tokens_decoder": {
                str(self.token_to_id(t)): {
                    "content": t,
                    "lstrip": t == "<mask>",
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                    "special": True,
                }
                for t in self.special_tokens
            },
        }
        with tempfile.TemporaryDirectory(dir=folder, prefix=".tokenizer-") as tmp:
            self.backend.model.save(tmp)  # vocab.json + merges.txt, as GPT-2 / RoBERTa ship them
            (Path(tmp) / "tokenizer.json").write_text(self.backend.to_str(pretty=True), encoding="utf-8")
            (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            (Path(tmp) / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
            for name in (
                "vocab.json",
                "merges.txt",
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
            ):
                with open(Path(tmp) / name, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(Path(tmp) / name, folder / name)
        for stale in ("vocab.txt",):  # a WordPiece vocabulary left from an earlier model would be read first
            (folder / stale).unlink(missing_ok=True)


GPT2_END = "<|endoftext|>"


class GPT2BPETokenizer(ByteLevelBPETokenizer):
    """GPT-2's own byte-level BPE folders (OpenAI's gpt2, GPT2Tokenizer): one special token, `<|endoftext|>`, which
    opens and ends a text and pads; nothing is added around a text (GPT-2's tokenizer adds nothing), so a prompt
    is `<|endoftext|>` + the text when `bertkit generate` starts it. Read only: bertkit's own GPTs use WordPiece."""

    special_tokens = (GPT2_END,) * 5  # pad, unk, cls, sep, mask: all the one token
    pair_special_count = 0

    def _added_tokens(self) -> list[AddedToken]:
        return [AddedToken(GPT2_END, special=True, normalized=False)]

    def _post_processor(self) -> processors.PostProcessor:
        return processors.ByteLevel(trim_offsets=True)

    @classmethod
    def recognises(cls, path: Path) -> bool:
        vocab = _bpe_vocab(Path(path))
        return vocab is not None and _is_gpt2(vocab)

    @classmethod
    def _require(cls, vocab: dict[str, int], path: Path) -> None:
        if GPT2_END not in vocab:
            raise BertkitError(f"{path}: the vocabulary has no {GPT2_END}; GPT-2's tokenizer needs it")

    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path, **kwargs) -> GPT2BPETokenizer:
        try:
            model = models.BPE.from_file(str(vocab_json), str(merges_txt))
        except Exception as e:  # the Rust loader raises a bare Exception naming the bad line
            raise BertkitError(
                f"{merges_txt}: not a valid merges file, or {vocab_json} not a vocabulary ({e})"
            ) from None
        return cls(_backend(model, kwargs.get("add_prefix_space", False)), **kwargs)

    def save(self, folder: str | Path) -> None:
        raise BertkitError(
            "saving GPT-2's own tokenizer is not supported; bertkit's GPTs use WordPiece (copy the original files)"
        )


def _bpe_vocab(path: Path) -> dict | None:
    """The vocabulary of a byte-level BPE folder or tokenizer.json; None when it is not one."""
    tokenizer_json = path if path.is_file() else path / "tokenizer.json"
    try:
        if tokenizer_json.is_file():
            model = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("model") or {}
            if not (isinstance(model, dict) and model.get("type") == "BPE"):
                return None
            return model.get("vocab") if isinstance(model.get("vocab"), dict) else {}
        if path.is_dir() and (path / "vocab.json").is_file() and not (path / "vocab.txt").is_file():
            vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
            return vocab if isinstance(vocab, dict) else {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, OSError):
        return None  # the WordPiece loader reports the broken file
    return None


def _is_gpt2(vocab: dict) -> bool:
    return GPT2_END in vocab and "<s>" not in vocab


def _backend(model: models.BPE, add_prefix_space: bool) -> tokenizers.Tokenizer:
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    return backend


def _require(vocab: dict[str, int], path: Path) -> None:
    missing = [t for t in TRAIN_ORDER if t not in vocab]
    if missing:
        raise BertkitError(
            f"{path}: the vocabulary has no {', '.join(missing)}; RoBERTa needs {', '.join(TRAIN_ORDER)}"
        )
