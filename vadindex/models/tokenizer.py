"""open_clip's CLIP tokenizer without torch: the same token ids from the same BPE vocabulary.

A port of ``open_clip.tokenizer.SimpleTokenizer`` with ``clean="lower"`` (the tokenizer of the ViT,
ResNet and ``vadindex-*`` CLIP models), derived from open_clip (MIT, (c) 2012-2021 Gabriel
Ilharco et al.), itself from OpenAI CLIP (MIT, (c) 2021 OpenAI). Importing ``open_clip.tokenizer``
imports torch and all of open_clip (about 3 s); this module reads open_clip's vocabulary file
without importing the package and gives the same ids (``tests/test_text_onnx.py`` compares them on
thousands of texts). Hugging Face ``tokenizers`` is not exact here: its regex engine keeps
characters that Python's ``regex`` drops under ``IGNORECASE`` (U+0345, for one).
"""

from __future__ import annotations

import html
import importlib.util
import zlib
from itertools import pairwise
from pathlib import Path

import ftfy
import numpy as np
import regex

#: Merges open_clip reads from the vocabulary file (``merges[1 : 49152 - 256 - 2 + 1]``).
N_MERGES = 49152 - 256 - 2
#: Start- and end-of-text ids: the last two entries of the vocabulary.
SOT, EOT = 49406, 49407
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def bytes_to_unicode() -> dict[int, str]:
    """open_clip's byte-to-symbol table (its order fixes the ids of the 256 byte symbols)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def open_clip_vocab() -> Path | None:
    """open_clip's BPE vocabulary file, found without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE
    return path if path.is_file() else None


def read_merges(path: Path) -> list[str]:
    """The first :data:`N_MERGES` merge lines (``"a b"``) of a gzipped vocabulary file.

    Only the start of the file is decompressed: the merges open_clip uses are the first 49k of
    its 262k lines.
    """
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    chunks: list[bytes] = []
    newlines = 0
    with open(path, "rb") as fh:
        while newlines <= N_MERGES:
            raw = fh.read(1 << 16)
            if not raw:
                break
            out = inflate.decompress(raw)
            chunks.append(out)
            newlines += out.count(b"\n")
    merges = b"".join(chunks).decode("utf-8").split("\n")[1 : N_MERGES + 1]
    if len(merges) != N_MERGES:
        raise ValueError(f"{path}: {len(merges)} merges, expected {N_MERGES}")
    return merges


class ClipTokenizer:
    """Texts to CLIP token ids, exactly as ``open_clip.get_tokenizer(model)`` for CLIP models.

    Each text is cleaned (ftfy, HTML entities, whitespace, lower case), split with CLIP's pattern,
    byte-encoded and merged by BPE rank; ids are ``[SOT, ..., EOT]`` zero-padded to
    ``context_length``; a longer text is cut and its last id replaced by EOT. The vocabulary is the
    256 byte symbols, the same with ``</w>``, the merges in rank order and the two special tokens,
    so the symbol made by merge ``r`` has id ``512 + r`` and no symbol-to-id table is needed.

    Args:
        context_length: ids per text (77 for most CLIP models).
        vocab: the gzipped vocabulary file; open_clip's own by default.
    """

    def __init__(self, context_length: int = 77, vocab: Path | None = None) -> None:
        path = vocab or open_clip_vocab()
        if path is None:
            raise FileNotFoundError(f"open_clip's {VOCAB_FILE} is not installed")
        self.context_length = context_length
        self._byte_symbol = bytes_to_unicode()
        # Keyed by the merge line "a b": exact, since no BPE symbol contains whitespace.
        self._ranks = {merge: rank for rank, merge in enumerate(read_merges(path))}
        symbols = list(self._byte_symbol.values())
        self._single = {s: i for i, s in enumerate(symbols)}
        self._single.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
        # A literal special token in a text becomes its id, as in open_clip.
        self._cache: dict[str, list[int]] = {"<start_of_text>": [SOT], "<end_of_text>": [EOT]}
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)

    def _bpe(self, token: str) -> list[int]:
        """Ids of one byte-encoded word (open_clip's ``bpe`` followed by its vocabulary lookup)."""
        hit = self._cache.get(token)
        if hit is not None:
            return hit
        word = [*token[:-1], token[-1] + "</w>"]
        ids = [self._single[s] for s in word]
        while len(word) > 1:
            best, rank = None, N_MERGES
            for a, b in pairwise(word):
                r = self._ranks.get(f"{a} {b}", N_MERGES)
                if r < rank:
                    best, rank = (a, b), r
            if best is None:
                break
            new_word: list[str] = []
            new_ids: list[int] = []
            i = 0
            while i < len(word):  # every occurrence of the pair, left to right
                if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                    new_word.append(word[i] + word[i + 1])
                    new_ids.append(512 + rank)
                    i += 2
                else:
                    new_word.append(word[i])
                    new_ids.append(ids[i])
                    i += 1
            word, ids = new_word, new_ids
        self._cache[token] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """The ids of one text, without the special tokens or padding."""
        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        text = " ".join(text.split()).strip().lower()
        out: list[int] = []
        for token in self._pattern.findall(text):
            out += self._bpe("".join(self._byte_symbol[b] for b in token.encode("utf-8")))
        return out

    def __call__(self, texts: list[str], context_length: int | None = None) -> np.ndarray:
        """``(len(texts), context_length)`` int64 token ids.

        Args:
            texts: the texts.
            context_length: overrides the tokenizer's.

        Returns:
            The ids, as open_clip's tokenizer returns them (a numpy array instead of a tensor).
        """
        length = context_length or self.context_length
        out = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in zip(out, texts, strict=True):
            ids = [SOT, *self.encode(text), EOT]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = EOT
            row[: len(ids)] = ids
        return out
