"""The Unicode tables of the native tokenizer (`tasks.curate.kernels`).

`cls[cp]`: 0 separator, 1 word character (letter, digit, mark), 2 a word by itself (Han,
kana, Thai, Lao, Khmer, Myanmar: scripts written without spaces), +4 when NFC may change a
text that contains the code point (such a text goes through pyarrow's `utf8_normalize` first).
`low[cp]`: pyarrow's `utf8_lower` of the code point (always one code point).

Both are derived from pyarrow itself (RE2's `\\p{L}\\p{N}\\p{M}` and script classes, utf8proc's
case mapping), evaluated once on every code point, so the native tokenizer splits exactly like
the regex path `tasks.curate.minhash.words_of`. They ship as `unicode_tables.npz` (9 KB) beside
this module; `build_unicode_tables` regenerates them (a few seconds).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

WORD, SINGLE, NEEDS_NFC = 1, 2, 4
WORD_CLASS = r"[\p{L}\p{N}\p{M}]"
# Scripts written without spaces: each character counts as a word.
CHAR_SCRIPTS = r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}])"
TABLE_FILE = Path(__file__).with_name("unicode_tables.npz")
_TABLES: tuple[np.ndarray, np.ndarray] | None = None


def build_unicode_tables() -> tuple[np.ndarray, np.ndarray]:
    """(cls uint8 [0x110000], low int32 [0x110000]) computed from pyarrow (see module doc)."""
    import unicodedata

    import pyarrow as pa
    import pyarrow.compute as pc

    cps = np.arange(0x110000)
    cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]
    chars = [chr(c) for c in cps.tolist()]
    arr = pa.array(chars)
    word = pc.match_substring_regex(arr, f"^{WORD_CLASS}$").to_numpy(zero_copy_only=False)
    single = pc.match_substring_regex(arr, f"^{CHAR_SCRIPTS}$").to_numpy(zero_copy_only=False)
    lowered = pc.utf8_lower(arr).to_pylist()
    cls = np.zeros(0x110000, np.uint8)
    low = np.arange(0x110000, dtype=np.int32)
    cls[cps[word]] = WORD
    cls[cps[single]] = SINGLE
    low[cps] = np.array([ord(x[0]) for x in lowered], np.int32)
    # NFC may change a text containing: a character not NFC-stable by itself, a combining
    # character (ccc != 0) or any mark (NFC_QC=Maybe), or a Hangul vowel / trailing jamo.
    nfc = [
        i
        for i, ch in zip(cps.tolist(), chars, strict=True)
        if i >= 0x300
        and (
            unicodedata.combining(ch)
            or unicodedata.category(ch).startswith("M")
            or 0x1161 <= i <= 0x1175
            or 0x11A8 <= i <= 0x11C2
            or not unicodedata.is_normalized("NFC", ch)
        )
    ]
    cls[np.array(nfc, np.int64)] |= NEEDS_NFC
    return cls, low


def unicode_tables() -> tuple[np.ndarray, np.ndarray]:
    """The tables, loaded once per process (rebuilt and saved if the file is missing)."""
    global _TABLES
    if _TABLES is None:
        try:
            z = np.load(TABLE_FILE)
            _TABLES = (z["cls"], np.arange(0x110000, dtype=np.int32) + z["low_delta"])
        except (OSError, KeyError, ValueError):
            cls, low = build_unicode_tables()
            with contextlib.suppress(OSError):  # a read-only install: rebuilt per process
                np.savez_compressed(
                    TABLE_FILE, cls=cls, low_delta=low - np.arange(0x110000, dtype=np.int32)
                )
            _TABLES = (cls, low)
    return _TABLES
