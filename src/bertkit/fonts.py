"""A font that draws Chinese in matplotlib pictures (attention maps, the polysemy lesson).

matplotlib's default font (DejaVu Sans) has no CJK glyphs: it draws each Chinese character as an empty box and
warns "Glyph … missing from font(s)". `cjk_font()` finds a font that has them, in this order:

1. an installed system font from `PREFERRED` (Noto Sans CJK / Source Han Sans, WenQuanYi, the Windows and macOS
   Chinese fonts), looked up in matplotlib's font list and, since that list is cached when matplotlib first
   runs, also in the usual font folders (a font installed later is still found);
2. Noto Sans CJK SC shipped inside the `mplfonts` package (`pip install mplfonts`), when it is installed.

`cjk_rc()` puts the one found first in matplotlib's font family, with DejaVu Sans after it for the glyphs
it lacks (matplotlib falls back per glyph). Without any, pictures are still drawn and the caller says once how to
get a font (`MISSING_FONT_ADVICE`). Decision: bertkit ships no font file of its own (a CJK font is 10-20 MB);
Debian's `fonts-noto-cjk` or `fonts-wqy-microhei`, or `mplfonts`, give one.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# family names as matplotlib reports them, best first
PREFERRED = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
# file names of those fonts in the usual folders, for fonts installed after matplotlib built its cache
FILE_PATTERNS = (
    "NotoSansCJK*",
    "SourceHanSans*",
    "wqy-microhei*",
    "wqy-zenhei*",
    "msyh*",
    "simhei*",
    "Droid*Fallback*",
)
FONT_FOLDERS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts", "/Library/Fonts")
MISSING_FONT_ADVICE = (
    "no font with Chinese glyphs was found, so Chinese is drawn as boxes: install one (Debian/Ubuntu: "
    "`apt install fonts-noto-cjk`; any system: `pip install mplfonts`) and run again"
)


@functools.cache
def cjk_font() -> tuple[str, str] | None:
    """(family name, file) of a font with Chinese glyphs, or None when none is installed."""
    from matplotlib import font_manager

    by_name = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for name in PREFERRED:
        if name in by_name:
            return name, by_name[name]
    folders = [Path(d).expanduser() for d in FONT_FOLDERS]
    for pattern in FILE_PATTERNS:
        for folder in folders:
            for path in sorted(folder.rglob(pattern)) if folder.is_dir() else []:
                if path.suffix.lower() in (".ttf", ".ttc", ".otf"):
                    return _register(path)
    spec = importlib.util.find_spec("mplfonts")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
        if shipped.is_file():
            return _register(shipped)
    return None


def _register(path: Path) -> tuple[str, str]:
    from matplotlib import font_manager

    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name(), str(path)


def cjk_rc() -> dict[str, object]:
    """matplotlib settings that draw Chinese, for `matplotlib.rc_context`: the CJK font first and DejaVu Sans
    behind it; empty when no CJK font is installed (the caller then warns with `MISSING_FONT_ADVICE`)."""
    found = cjk_font()
    if found is None:
        return {}
    return {"font.family": [found[0], "DejaVu Sans"], "axes.unicode_minus": False}  # CJK fonts often lack U+2212
