"""The gallery page in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

It serves tests/conftest.py's table models: 'tiny-table' (the default, attribute table) and 'tiny' (no table).
"""

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import TABLE_ATTRIBUTES, TABLE_MODEL, TINY_MODEL

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow  # headless Chromium: about 25 s a test on a 2-core machine

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHARED_SCREENSHOT = Path("/tmp/gallery.png")  # a fixed place for a person to look at the page
TRISTATE_SCREENSHOT = Path("/tmp/gallery-tristate.png")  # the attribute toggles in all three states


def serve_in_thread(app):
    """Serve ``app`` on a free loopback port in a thread; yields its base URL, shuts it down after."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(table_app):
    yield from serve_in_thread(table_app)


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
TOGGLES = "#attribute-boxes button.toggle"


def toggle(name: str) -> str:
    return f"{TOGGLES}[data-attr={name}]"


def toggle_states(page) -> dict:
    return dict(page.eval_on_selector_all(TOGGLES, "els => els.map(e => [e.dataset.attr, e.dataset.state])"))


def click_until(page, name: str, state: str) -> None:
    """Click an attribute's toggle until it shows ``state`` (any -> on -> off -> any)."""
    for _ in range(3):
        if page.get_attribute(toggle(name), "data-state") == state:
            return
        page.click(toggle(name))
    assert page.get_attribute(toggle(name), "data-state") == state


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
    # Controls come from /api/models: the default model's attributes, all "any", and the model picker.
    assert toggle_states(page) == {name: "any" for name in TABLE_ATTRIBUTES}
    assert page.eval_on_selector_all("#model option", "els => els.map(e => e.value)") == [TINY_MODEL, TABLE_MODEL]
    assert page.input_value("#model") == TABLE_MODEL
    assert page.input_value("#seed") == "1000"
    srcs = page.eval_on_selector_all(FACES, "imgs => imgs.map(i => i.getAttribute('src'))")
    assert srcs[0].startswith(f"/api/face?model={TABLE_MODEL}&seed=1000") and "seed=1001" in srcs[1]
    assert not any("attrs=" in src for src in srcs)  # nothing fixed: no attrs at all
    # Every face has explicit dimensions, a permalink and a download link.
    assert page.eval_on_selector_all(FACES, "imgs => imgs.every(i => i.getAttribute('width') && i.getAttribute('height'))")
    assert page.get_attribute("#grid li.face .permalink", "href") == "/?seed=1000#enlarge"
    assert page.get_attribute("#grid li.face .png", "href") == f"/api/face?model={TABLE_MODEL}&seed=1000"
    summary = page.inner_text("#summary")
    assert summary.startswith("24 faces from seed 1000")
    assert "no attribute fixed: all follow the training data" in summary
    assert page.get_attribute("#grid li.face .download", "download").endswith(".png")
    page.screenshot(path=str(tmp_path / "gallery.png"), full_page=False)
    page.screenshot(path=str(SHARED_SCREENSHOT), full_page=False)
    print(f"\ngallery screenshots: {tmp_path / 'gallery.png'} and {SHARED_SCREENSHOT}")
    assert page.console_errors == []


def test_toggles_cycle_any_on_off_and_change_the_faces(page, server_url):
    page.goto(f"{server_url}/?seed=7")
    wait_all_loaded(page)
    before_src = page.get_attribute(FACES, "src")
    before_pixels = first_face_pixels(page)
    # any -> on: the face's URL fixes Male on; the button says so in a symbol and a word, not only in colour.
    page.click(toggle("Male"))
    page.wait_for_function("sel => document.querySelector(sel).src.includes('attrs=Male')", arg=FACES)
    wait_all_loaded(page)
    assert page.get_attribute(toggle("Male"), "data-state") == "on"
    assert page.inner_text(toggle("Male")).split() == ["✓", "Male", "ON"]  # the word is styled in capitals
    assert page.get_attribute(toggle("Male"), "aria-label") == "Male: on"
    on_src, on_pixels = page.get_attribute(FACES, "src"), first_face_pixels(page)
    assert on_src != before_src and "attrs=Male" in page.url
    # on -> off: attrs=-Male, another face.
    page.click(toggle("Male"))
    page.wait_for_function("sel => document.querySelector(sel).src.includes('attrs=-Male')", arg=FACES)
    wait_all_loaded(page)
    assert page.get_attribute(toggle("Male"), "data-state") == "off"
    assert page.eval_on_selector(f"{toggle('Male')} .mark", "e => e.textContent") == "✗"
    assert page.eval_on_selector(f"{toggle('Male')} .word", "e => e.textContent") == "off"
    off_pixels = first_face_pixels(page)
    assert "attrs=-Male" in page.url and len({bytes(before_pixels), bytes(on_pixels), bytes(off_pixels)}) >= 2
    assert page.inner_text("#summary").endswith("fixed: Male off; the rest follow the training data (each face a "
                                                "real attribute combination)")
    # off -> any: back to the unfixed URL and the very same pixels as before.
    page.click(toggle("Male"))
    page.wait_for_function("sel => !document.querySelector(sel).src.includes('attrs=')", arg=FACES)
    wait_all_loaded(page)
    assert page.get_attribute(FACES, "src") == before_src and first_face_pixels(page) == before_pixels
    assert "attrs" not in page.url
    assert page.console_errors == []


def test_tristate_toggles_screenshot_and_summary(page, server_url):
    page.goto(f"{server_url}/?seed=40&attrs=Smiling,-Male,-No_Beard")
    wait_all_loaded(page)
    assert toggle_states(page) == {"Male": "off", "Young": "any", "Smiling": "on", "Eyeglasses": "any",
                                   "No_Beard": "off"}
    marks = page.eval_on_selector_all(f"{TOGGLES} .mark", "els => els.map(e => e.textContent)")
    words = page.eval_on_selector_all(f"{TOGGLES} .word", "els => els.map(e => e.textContent)")
    assert marks == ["✗", "·", "✓", "·", "✗"] and words == ["off", "any", "on", "any", "off"]
    # Off is also struck through: the three states differ in more than colour.
    assert page.eval_on_selector(f"{toggle('Male')} .name", "e => getComputedStyle(e).textDecorationLine") \
        == "line-through"
    summary = page.inner_text("#summary")
    assert "fixed: Male off, Smiling on, No Beard off; the rest follow the training data" in summary
    # A bearded woman has no training row: the enlarged face says its attributes came from the nearest rows.
    page.click("#grid li.face:nth-child(1) .enlarge")
    page.wait_for_selector("#lightbox[open]")
    page.wait_for_function("() => document.getElementById('lightbox-attributes').textContent.length > 0")
    line = page.inner_text("#lightbox-attributes")
    assert line.startswith("on: ") and "Smiling" in line and "nearest" in line
    assert "Male" not in line.split("(")[0].replace("on: ", "").split(", ")
    page.keyboard.press("Escape")
    page.click(toggle("Young"))
    page.wait_for_function("sel => document.querySelector(sel).src.includes('Young')", arg=FACES)
    wait_all_loaded(page)
    assert "attrs=-Male,Young,Smiling,-No_Beard" in page.url
    page.screenshot(path=str(TRISTATE_SCREENSHOT), full_page=False)
    print(f"\ntri-state screenshot: {TRISTATE_SCREENSHOT}")
    # "all any" clears every toggle.
    page.click("#attrs-reset")
    page.wait_for_function("sel => !document.querySelector(sel).src.includes('attrs=')", arg=FACES)
    assert set(toggle_states(page).values()) == {"any"}
    assert page.console_errors == []


def test_a_model_without_a_table_says_so_and_keeps_shared_toggles(page, server_url):
    page.goto(f"{server_url}/?seed=3&attrs=Male,-Smiling,Young")
    wait_all_loaded(page)
    page.select_option("#model", TINY_MODEL)
    page.wait_for_function("sel => document.querySelector(sel).src.includes('model=tiny&')", arg=FACES)
    wait_all_loaded(page)
    # Young is not an attribute of tiny: dropped; Male and Smiling keep their states.
    assert toggle_states(page) == {"Male": "on", "Eyeglasses": "any", "Smiling": "off"}
    assert "attrs=Male,-Smiling" in page.get_attribute(FACES, "src")
    assert "each on its own (this model has no attribute table)" in page.inner_text("#summary")
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
    assert page.get_attribute("#lightbox-download", "download") == f"face-{TABLE_MODEL}-4294967292.png"
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
    click_until(page, "Smiling", "on")
    click_until(page, "Male", "off")
    card = "#grid li.face:nth-child(5)"
    page.wait_for_function("sel => document.querySelector(sel).src.includes('attrs=-Male,Smiling')",
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
    assert permalink == "/?seed=318&attrs=-Male,Smiling#enlarge"

    # A fresh page (no shared state) from the permalink: same controls, same face first, and enlarged.
    fresh = page.context.new_page()
    fresh.console_errors = []
    fresh.on("console", lambda message: message.type == "error" and fresh.console_errors.append(message.text))
    fresh.goto(server_url + permalink)
    wait_all_loaded(fresh)
    assert fresh.get_attribute(FACES, "src") == src
    assert first_face_pixels(fresh) == pixels
    assert toggle_states(fresh) == {"Male": "off", "Young": "any", "Smiling": "on", "Eyeglasses": "any",
                                    "No_Beard": "any"}
    assert fresh.input_value("#seed") == "318"
    fresh.wait_for_selector("#lightbox[open]")
    assert "seed=318&attrs=-Male,Smiling" in fresh.get_attribute("#lightbox-image", "src")
    fresh.wait_for_function("() => document.getElementById('lightbox-image').naturalWidth > 0")
    fresh.screenshot(path=str(tmp_path / "lightbox.png"))
    print(f"\nlightbox screenshot: {tmp_path / 'lightbox.png'}")
    assert fresh.console_errors == [] and page.console_errors == []


def test_shared_link_attrs_are_case_insensitive(page, server_url):
    page.goto(f"{server_url}/?seed=2&attrs=eyeglasses,-SMILING")
    wait_all_loaded(page)
    assert toggle_states(page)["Eyeglasses"] == "on" and toggle_states(page)["Smiling"] == "off"
    assert "attrs=-Smiling,Eyeglasses" in page.get_attribute(FACES, "src")
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


# --- Edit a photo ---------------------------------------------------------------------------------------------------

EDIT_SCREENSHOT = Path("/tmp/gallery-edit.png")  # the panel with a real photo, for a person to look at
EDIT_IMAGES = ("#edit-framed", "#edit-rebuilt", "#edit-edited", "#edit-photo")


@pytest.fixture(scope="module")
def edit_server_url(encoder_app):
    """The gallery over tests/conftest.py's encoder models: 'tiny-enc' (can encode, the default) and 'tiny'."""
    yield from serve_in_thread(encoder_app)


def wait_edit_faces(page):
    page.wait_for_function(
        "sels => sels.every(s => { const i = document.querySelector(s); return i.getAttribute('src') && i.complete"
        " && i.naturalWidth > 0; }) && !document.getElementById('edit').hasAttribute('data-busy')",
        arg=list(EDIT_IMAGES), timeout=60_000)


def api_edit(server_url: str, query: str, jpeg: bytes) -> str:
    """The PNG /api/edit answers for this JPEG and query, as the data URL the panel shows."""
    import base64
    import urllib.request

    request = urllib.request.Request(f"{server_url}/api/edit?{query}", data=jpeg,
                                     headers={"Content-Type": "image/jpeg"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return "data:image/png;base64," + base64.b64encode(response.read()).decode()


def edit_toggle(name: str) -> str:
    return f"#edit-boxes button.toggle[data-attr={name}]"


def drop_file(page, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the panel's drop zone, as a person dragging it from their desktop would."""
    import base64

    page.evaluate("""([b64, name, mime]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: mime }));
        document.getElementById('edit-drop').dispatchEvent(
            new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [base64.b64encode(data).decode(), name, mime])


def test_edit_a_photo_panel(page, edit_server_url, celeba_photo):
    import io

    from PIL import Image

    from tests.conftest import CELEBA_HQ, ENCODER_ATTRIBUTES, ENCODER_MODEL

    celeba_photo()  # skips, with the reason, where the shared photos are absent
    page.goto(f"{edit_server_url}/?seed=1#edit")
    page.wait_for_function("() => document.getElementById('edit-model').options.length > 0")
    assert page.eval_on_selector("#edit", "panel => panel.open"), "#edit opens the panel"
    # Only the models that can encode are offered; every toggle starts "as found".
    assert page.eval_on_selector_all("#edit-model option", "els => els.map(e => e.value)") == [ENCODER_MODEL]
    assert page.eval_on_selector_all("#edit-boxes .toggle", "els => els.map(e => e.dataset.attr)") \
        == list(ENCODER_ATTRIBUTES)
    assert set(page.eval_on_selector_all("#edit-boxes .word", "els => els.map(e => e.textContent)")) == {"as found"}

    # Choose a portrait: one POST to /api/edit with the photo as a multipart field.
    with page.expect_request(lambda r: "/api/edit" in r.url) as posted:
        page.set_input_files("#edit-file", str(CELEBA_HQ / "0.jpg"))
    request = posted.value
    assert request.method == "POST" and "format=json" in request.url and f"model={ENCODER_MODEL}" in request.url
    assert "attrs=" not in request.url and "size=256" in request.url and "method=pti-photo" in request.url
    assert request.headers["content-type"].startswith("multipart/form-data")
    wait_edit_faces(page)
    sizes = page.eval_on_selector_all(",".join(EDIT_IMAGES), "imgs => imgs.map(i => i.naturalWidth)")
    assert sizes == [256, 256, 256, 128]  # the faces at 256 px; the whole photo at its own size (CelebA-HQ's 128)
    # Nothing changed yet: the edited face is the framed photo (the edit is a change to the photo); the toggles
    # show how sure the encoder is.
    assert page.get_attribute("#edit-edited", "src") == page.get_attribute("#edit-framed", "src")
    shown = {t["attr"]: t["prob"].split() for t in page.eval_on_selector_all(
        "#edit-boxes .toggle", "els => els.map(e => ({attr: e.dataset.attr, prob: e.querySelector('.prob')"
        ".textContent}))")}
    probabilities = {name: float(p) for name, (p, _) in shown.items()}
    assert set(probabilities) == set(ENCODER_ATTRIBUTES) and all(0 <= p <= 1 for p in probabilities.values())
    # Each toggle says what "as found" means for it: on or off, as the API found it (probability >= 0.5).
    reported = page.evaluate("() => edit.found.attributes")
    assert {name: state for name, (_, state) in shown.items()} == {
        name: "on" if p >= 0.5 else "off" for name, p in reported.items()}
    assert all(abs(probabilities[name] - p) <= 0.005 for name, p in reported.items())
    summary = page.inner_text("#edit-summary")
    assert "found: Male " in summary and "nothing changed" in summary
    framed, rebuilt = page.get_attribute("#edit-framed", "src"), page.get_attribute("#edit-rebuilt", "src")

    # Turn on an attribute the encoder found off: a new edit; the framed input and the rebuilt face stay.
    name = min(reported, key=reported.get)
    assert reported[name] < 0.5
    with page.expect_request(lambda r: "/api/edit" in r.url and f"attrs={name}" in r.url):
        page.click(edit_toggle(name))
    page.wait_for_function("old => document.getElementById('edit-edited').src !== old", arg=rebuilt)
    wait_edit_faces(page)
    assert page.get_attribute(edit_toggle(name), "data-state") == "on"
    assert page.inner_text(edit_toggle(name)).split()[-1] == "ON"
    assert page.get_attribute("#edit-framed", "src") == framed and page.get_attribute("#edit-rebuilt", "src") == rebuilt
    edited = page.get_attribute("#edit-edited", "src")
    assert edited != rebuilt and f"changed: {name.replace('_', ' ')} on" in page.inner_text("#edit-summary")
    # Download: the edited PNG, the very bytes the API gives for this photo and change.
    assert page.is_visible("#edit-download")
    assert page.get_attribute("#edit-download", "href") == edited
    assert page.get_attribute("#edit-download", "download") == f"edited-{ENCODER_MODEL}-{name}.png"
    assert edited == api_edit(edit_server_url, f"attrs={name}&size=256", celeba_photo(0))
    # The whole photo with the edit in it: shown, and offered for download, the API's view=photo bytes.
    assert page.is_visible("#edit-photo") and page.is_visible("#edit-photo-download")
    whole = page.get_attribute("#edit-photo", "src")
    assert page.get_attribute("#edit-photo-download", "href") == whole
    assert page.get_attribute("#edit-photo-download", "download") == f"photo-edited-{ENCODER_MODEL}-{name}.png"
    assert whole == api_edit(edit_server_url, f"attrs={name}&view=photo", celeba_photo(0))
    # The method picker: the model's methods, its default chosen; picking photo edits by photo (the API's bytes for
    # method=photo, another face than the default's), and picking the default again gives the first edit back.
    assert page.eval_on_selector_all("#edit-method option", "els => els.map(e => e.value)") == [
        "photo", "generator", "pti", "pti-photo"]
    assert page.input_value("#edit-method") == "pti-photo" and page.evaluate("() => edit.found.method") == "pti-photo"
    with page.expect_request(lambda r: "/api/edit" in r.url and "method=photo" in r.url):
        page.select_option("#edit-method", "photo")
    page.wait_for_function("() => edit.found && edit.found.method === 'photo'")
    wait_edit_faces(page)
    by_photo = page.get_attribute("#edit-edited", "src")
    assert by_photo == api_edit(edit_server_url, f"attrs={name}&size=256&method=photo", celeba_photo(0))
    assert by_photo != edited
    page.select_option("#edit-method", "pti-photo")
    page.wait_for_function("() => edit.found && edit.found.method === 'pti-photo'")
    wait_edit_faces(page)
    assert page.get_attribute("#edit-edited", "src") == edited
    page.locator("#edit").scroll_into_view_if_needed()
    page.screenshot(path=str(EDIT_SCREENSHOT), full_page=False)
    print(f"\nedit panel screenshot: {EDIT_SCREENSHOT}")

    # Drop a picture without a face: the panel says so (the API's 422), and shows no faces.
    flat = io.BytesIO()
    Image.new("RGB", (160, 160), (150, 150, 150)).save(flat, "PNG")
    drop_file(page, flat.getvalue(), "wall.png", "image/png")
    page.wait_for_function("() => document.getElementById('edit-status').textContent.includes('no face found')")
    assert page.get_attribute("#edit-edited", "src") is None and not page.is_visible("#edit-download")
    assert not page.is_visible("#edit-photo") and not page.is_visible("#edit-photo-download")
    assert "error" in page.get_attribute("#edit-status", "class")
    # Drop a real portrait: faces again, the change kept.
    drop_file(page, celeba_photo(1), "portrait.jpg", "image/jpeg")
    wait_edit_faces(page)
    assert page.get_attribute(edit_toggle(name), "data-state") == "on"
    assert page.get_attribute("#edit-framed", "src") != framed
    # "all as found" clears the changes: edited = the framed photo again.
    page.click("#edit-reset")
    page.wait_for_function("() => document.getElementById('edit-edited').src === "
                           "document.getElementById('edit-framed').src")
    errors = [e for e in page.console_errors if "status of 422" not in e]  # the refused wall, logged by Chromium
    assert errors == []


def test_edit_panel_without_an_encoder_says_so(page, server_url):
    page.goto(f"{server_url}/?seed=1#edit")
    page.wait_for_function("() => document.getElementById('edit-note').textContent.length > 0")
    assert "no model served here can encode photos" in page.inner_text("#edit-note")
    assert page.is_disabled("#edit-file")
    assert page.console_errors == []
