"""The attention page in a real browser (headless Chromium over the DevTools protocol, tests/cdp.py): it loads
with no console errors and nothing from a network, the layer/head picker changes the drawing, hovering a token on
the left outlines its row and shades where it looks, on the right what looks at it, and a click keeps the choice."""

import io

import numpy as np
import pytest
from cdp import Browser, find_browser
from helpers import model_folders, one_thread  # noqa: F401  (tiny models: one thread)

from bertkit.use.attention import attention_maps
from bertkit.use.attention_page import write_page

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on PATH (make test installs Debian's chromium where apt-get and root allow)"
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    maps = attention_maps(model_folders(root / "models"), "我们今天在北京开会", pair="the cat", pad_to=16)
    # a random tiny model attends almost uniformly, so every head looks alike: sharp rows instead (padding
    # still gets nothing), for pictures that differ between heads
    real = np.array(maps.kinds) != "pad"
    sharp = np.random.default_rng(0).dirichlet(np.full(real.sum(), 0.2), size=maps.probs.shape[:3])
    maps.probs = np.zeros_like(maps.probs)
    maps.probs[..., real] = sharp
    path = root / "attention.html"
    write_page(maps, path, 2, 1)
    browser = Browser(BROWSER)
    try:
        browser.open(path)
        yield browser, maps
    finally:
        browser.close()


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def centre(browser: Browser, side: str, index: int) -> tuple[float, float]:
    box = browser.evaluate(
        f"(() => {{ const r = document.querySelectorAll('#{side} .tok')[{index}].getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    return box[0], box[1]


def pick(browser: Browser, select: str, value: int) -> None:
    browser.evaluate(
        f"(() => {{ const s = document.getElementById('{select}'); s.value = '{value}';"
        " s.dispatchEvent(new Event('change')); })()"
    )


def test_it_loads_without_errors_and_shows_every_token_marked(page):
    browser, maps = page
    assert browser.errors() == []
    assert browser.evaluate("[attentionView.layer, attentionView.head]") == [2, 1]
    left = browser.evaluate("Array.from(document.querySelectorAll('#left .tok')).map(e => e.className)")
    assert len(left) == len(maps.tokens) == 16
    assert [c.split()[1] for c in left] == maps.kinds  # text / special / pad, as the maps say
    assert ["seg1" in c for c in left] == [s == 1 for s in maps.segments]
    assert browser.evaluate("document.querySelectorAll('#left .tok')[1].textContent") == maps.tokens[1]
    # the page's numbers are the maps' (uint16 on the way: within 1/65535)
    got = browser.evaluate("[0,1,2].map(j => attentionView.p(2, 3, 4, j))")
    np.testing.assert_allclose(got, maps.probs[1, 2, 4, :3], atol=1e-5)


def test_the_picker_changes_the_drawing(page):
    browser, _ = page
    pick(browser, "layer", 2)
    pick(browser, "head", 1)
    first = pixels(browser.screenshot())
    pick(browser, "head", 2)
    second = pixels(browser.screenshot())
    assert browser.evaluate("attentionView.head") == 2
    changed = np.abs(first - second).sum(-1) > 30
    assert changed.sum() > 500  # the matrix and the lines are redrawn
    pick(browser, "head", 2)
    assert np.array_equal(pixels(browser.screenshot()), second)  # the same head draws the same picture
    assert browser.errors() == []


def test_hovering_a_token_shows_its_row_and_a_click_keeps_it(page):
    browser, maps = page
    pick(browser, "head", 1)
    browser.hover(5, 5)
    before = pixels(browser.screenshot())
    browser.hover(*centre(browser, "left", 3))
    assert browser.evaluate("attentionView.focus") == {"side": "query", "index": 3}
    assert browser.evaluate("document.querySelectorAll('#left .tok')[3].classList.contains('active')")
    status = browser.evaluate("document.getElementById('status').textContent")
    top = int(np.argmax(maps.probs[1, 0, 3]))
    assert status.startswith(f"{maps.tokens[3]} looks at: {maps.tokens[top]} ")
    shaded = browser.evaluate("Array.from(document.querySelectorAll('#right .tok')).map(e => e.style.backgroundColor)")
    assert all(shaded[j] for j in range(len(shaded)) if maps.probs[1, 0, 3, j] > 0.01)
    assert not any(shaded[j] for j, k in enumerate(maps.kinds) if k == "pad")  # padding is looked at by nobody
    hovered = pixels(browser.screenshot())
    assert (np.abs(hovered - before).sum(-1) > 30).sum() > 200
    browser.hover(*centre(browser, "right", 1))  # the other side: what looks at token 1
    assert browser.evaluate("attentionView.focus") == {"side": "key", "index": 1}
    browser.click(*centre(browser, "left", 2))
    browser.hover(5, 5)  # moving away does not clear a clicked token
    assert browser.evaluate("attentionView.focus") == {"side": "query", "index": 2}
    browser.click(*centre(browser, "left", 2))  # a second click lets it go
    browser.hover(5, 5)
    assert browser.evaluate("attentionView.focus") is None
    assert browser.errors() == []
