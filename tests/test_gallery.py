"""The gallery page in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHARED_SCREENSHOT = Path("/tmp/gallery.png")  # a fixed place for a person to look at the page


@pytest.fixture(scope="module")
def server_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        # CI (.ci/run) installs Chromium and sets FACEGEN_REQUIRE_BROWSER=1: there a missing browser is a failure.
        if os.environ.get("FACEGEN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    opened = context.new_page()
    opened.console_errors = []
    opened.on("console", lambda message: message.type == "error" and opened.console_errors.append(message.text))
    opened.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    yield opened
    context.close()


FACES = "#grid li.face img"


def loaded_faces(page) -> int:
    return page.eval_on_selector_all(FACES, "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")


def wait_all_loaded(page):
    page.wait_for_function(
        "sel => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=FACES, timeout=30_000)


def first_face_pixels(page) -> list[int]:
    # Reads the decoded image through a canvas: proves the pixels changed, not just the URL.
    return page.eval_on_selector(FACES, """img => {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);
    }""")


def test_gallery_renders_faces_and_controls(page, server_url, tmp_path):
    page.goto(f"{server_url}/?seed=1000")
    wait_all_loaded(page)
    assert loaded_faces(page) >= 24
    assert page.title().startswith("facegen")
    # Controls come from /api/models: the tiny model's three attributes and the model picker.
    boxes = page.eval_on_selector_all("#attribute-boxes input[type=checkbox]", "els => els.map(e => e.value)")
    assert boxes == ["Male", "Eyeglasses", "Smiling"]
    assert page.eval_on_selector_all("#model option", "els => els.map(e => e.value)") == ["tiny"]
    assert page.input_value("#seed") == "1000"
    srcs = page.eval_on_selector_all(FACES, "imgs => imgs.map(i => i.getAttribute('src'))")
    assert srcs[0].startswith("/api/face?model=tiny&seed=1000") and "seed=1001" in srcs[1]
    # Every face has explicit dimensions, a permalink and a download link.
    assert page.eval_on_selector_all(FACES, "imgs => imgs.every(i => i.getAttribute('width') && i.getAttribute('height'))")
    assert page.get_attribute("#grid li.face .permalink", "href") == "/?seed=1000#enlarge"
    assert page.get_attribute("#grid li.face .png", "href") == "/api/face?model=tiny&seed=1000"
    assert page.inner_text("#summary").startswith("24 faces from seed 1000")
    assert page.get_attribute("#grid li.face .download", "download").endswith(".png")
    page.screenshot(path=str(tmp_path / "gallery.png"), full_page=False)
    page.screenshot(path=str(SHARED_SCREENSHOT), full_page=False)
    print(f"\ngallery screenshots: {tmp_path / 'gallery.png'} and {SHARED_SCREENSHOT}")
    assert page.console_errors == []


def test_toggling_an_attribute_changes_the_faces(page, server_url):
    page.goto(f"{server_url}/?seed=7")
    wait_all_loaded(page)
    before_src = page.get_attribute(FACES, "src")
    before_pixels = first_face_pixels(page)
    page.check("#attribute-boxes input[value=Male]")
    page.wait_for_function("sel => document.querySelector(sel).src.includes('attrs=Male')", arg=FACES)
    wait_all_loaded(page)
    after_src = page.get_attribute(FACES, "src")
    after_pixels = first_face_pixels(page)
    assert after_src != before_src and "attrs=Male" in after_src
    assert len(after_pixels) == len(before_pixels) and after_pixels != before_pixels
    # The page URL follows the controls, so it can be shared.
    assert "attrs=Male" in page.url
    # Turning it off again (attributes fixed, all off) is yet another image: attrs= is explicit.
    page.uncheck("#attribute-boxes input[value=Male]")
    page.wait_for_function("sel => !document.querySelector(sel).src.includes('attrs=Male')", arg=FACES)
    wait_all_loaded(page)
    assert "attrs=&" in page.get_attribute(FACES, "src") + "&"
    assert page.console_errors == []


def test_more_button_and_lightbox(page, server_url):
    page.goto(f"{server_url}/?seed=4294967290")
    wait_all_loaded(page)
    count = page.locator(FACES).count()
    page.click("#more")
    wait_all_loaded(page)
    assert page.locator(FACES).count() == count + 24
    # Seeds wrap past the maximum instead of leaving the valid range.
    seeds = page.eval_on_selector_all("#grid li.face", "items => items.map(i => Number(i.dataset.seed))")
    assert seeds[:7] == [4294967290, 4294967291, 4294967292, 4294967293, 4294967294, 4294967295, 0]

    assert not page.is_visible("#lightbox")
    page.click("#grid li.face:nth-child(3) .enlarge")
    page.wait_for_selector("#lightbox[open]")
    page.wait_for_function("() => { const i = document.getElementById('lightbox-image');"
                           " return i.complete && i.naturalWidth > 0; }")
    assert page.eval_on_selector("#lightbox-image", "i => i.naturalWidth") == 512
    assert "seed=4294967292" in page.get_attribute("#lightbox-image", "src")
    assert page.get_attribute("#lightbox-download", "download") == "face-tiny-4294967292.png"
    page.keyboard.press("Escape")
    page.wait_for_selector("#lightbox", state="hidden")
    assert page.console_errors == []


def test_seed_box_restarts_the_grid(page, server_url):
    page.goto(f"{server_url}/?seed=5")
    wait_all_loaded(page)
    page.fill("#seed", "123")
    page.dispatch_event("#seed", "change")
    page.wait_for_function("sel => document.querySelector(sel).src.includes('seed=123')", arg=FACES)
    wait_all_loaded(page)
    assert page.locator(FACES).count() == 24
    assert "seed=123" in page.url
    page.fill("#seed", "99999999999")
    page.dispatch_event("#seed", "change")
    assert "0 to 4294967295" in page.inner_text("#status")
    assert page.console_errors == []


def test_permalink_reproduces_the_face(page, server_url, tmp_path):
    page.goto(f"{server_url}/?seed=314")
    wait_all_loaded(page)
    page.check("#attribute-boxes input[value=Smiling]")
    page.check("#attribute-boxes input[value=Male]")
    card = "#grid li.face:nth-child(5)"
    page.wait_for_function("sel => document.querySelector(sel).src.includes('attrs=Male,Smiling')",
                           arg=f"{card} img")
    wait_all_loaded(page)
    src = page.get_attribute(f"{card} img", "src")
    pixels = page.eval_on_selector(f"{card} img", """img => {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        canvas.getContext('2d').drawImage(img, 0, 0);
        return Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data);
    }""")
    permalink = page.get_attribute(f"{card} .permalink", "href")
    assert permalink == "/?seed=318&attrs=Male,Smiling#enlarge"

    # A fresh page (no shared state) from the permalink: same controls, same face first, and enlarged.
    fresh = page.context.new_page()
    fresh.console_errors = []
    fresh.on("console", lambda message: message.type == "error" and fresh.console_errors.append(message.text))
    fresh.goto(server_url + permalink)
    wait_all_loaded(fresh)
    assert fresh.get_attribute(FACES, "src") == src
    assert first_face_pixels(fresh) == pixels
    assert fresh.is_checked("#attribute-boxes input[value=Male]")
    assert fresh.is_checked("#attribute-boxes input[value=Smiling]")
    assert not fresh.is_checked("#attribute-boxes input[value=Eyeglasses]")
    assert fresh.input_value("#seed") == "318"
    fresh.wait_for_selector("#lightbox[open]")
    assert "seed=318&attrs=Male,Smiling" in fresh.get_attribute("#lightbox-image", "src")
    fresh.wait_for_function("() => document.getElementById('lightbox-image').naturalWidth > 0")
    fresh.screenshot(path=str(tmp_path / "lightbox.png"))
    print(f"\nlightbox screenshot: {tmp_path / 'lightbox.png'}")
    assert fresh.console_errors == [] and page.console_errors == []


def test_shared_link_attrs_are_case_insensitive(page, server_url):
    page.goto(f"{server_url}/?seed=2&attrs=eyeglasses")
    wait_all_loaded(page)
    assert page.is_checked("#attribute-boxes input[value=Eyeglasses]")
    assert "attrs=Eyeglasses" in page.get_attribute(FACES, "src")
    assert page.console_errors == []


def test_narrow_screen_has_no_horizontal_scroll(browser, server_url, tmp_path):
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True)
    phone = context.new_page()
    errors = []
    phone.on("console", lambda message: message.type == "error" and errors.append(message.text))
    phone.goto(f"{server_url}/?seed=1")
    wait_all_loaded(phone)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    # Two or more faces per row even on a phone, and thumbnails fetched for the device's pixel ratio.
    lefts = phone.eval_on_selector_all("#grid li.face", "items => items.slice(0, 3).map(i => i.offsetLeft)")
    assert lefts[1] > lefts[0]
    assert "size=" in phone.get_attribute(FACES, "src")
    phone.screenshot(path=str(tmp_path / "phone.png"))
    print(f"\nphone screenshot: {tmp_path / 'phone.png'}")
    assert errors == []
    context.close()
