"""Every character the dashboard prints exists in the default fonts (no missing-glyph boxes; issue 14).

The page names no web font, so on a Debian machine text falls back to DejaVu Sans or Liberation Sans:
every non-ASCII character in static/ must be in one of them. No Ray needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = [pytest.mark.e2e]

STATIC = Path(__file__).resolve().parents[2] / "static"
FONTS = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
         Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")]


def test_every_non_ascii_character_has_a_glyph_in_the_default_fonts() -> None:
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        require(False, "fontTools is not installed")
        raise
    fonts = [f for f in FONTS if f.exists()]
    require(bool(fonts), "neither DejaVu Sans nor Liberation Sans is installed (apt-get install fonts-dejavu-core)")
    covered: set[int] = set()
    for f in fonts:
        covered |= set(TTFont(str(f)).getBestCmap())
    missing = {}
    for path in [*STATIC.glob("*.js"), *STATIC.glob("*.html"), *STATIC.glob("*.css")]:
        for ch in set(path.read_text(encoding="utf-8")):
            if ord(ch) > 127 and ord(ch) not in covered:
                missing.setdefault(path.name, []).append(f"U+{ord(ch):04X} {ch}")
    assert not missing, f"characters without a glyph in the default fonts: {missing}"
    assert "\u24d8" not in (STATIC / "app.js").read_text(encoding="utf-8")  # the old errors-cell marker
