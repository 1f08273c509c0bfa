"""Take the README's screenshots of the gallery page from a real exported model.

Serves a models directory with create_app() in-process on 127.0.0.1 (plain HTTP), opens the gallery in headless
Chromium at 1280x900, waits until every face in the grid has loaded, and saves two viewport screenshots:

- gallery.png:          the gallery as it opens (no attribute fixed)
- gallery-toggles.png:  the same seeds with one or two attribute toggles set on (Smiling and Eyeglasses where the
                        model has them, else its first two attributes)

Usage (from the repository root):

    .venv/bin/python tools/readme_pictures.py                       # models/ and its DEFAULT -> docs/images/
    .venv/bin/python tools/readme_pictures.py --model NAME --out /tmp/pics

Needs Chromium (Debian: apt-get install chromium) and Playwright (requirements-dev.txt). Exits non-zero with a
message when Chromium is missing or the models directory has no usable default model.
"""

import argparse
import logging
import os
import shutil
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # so `import app` works when run as a script
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The same browser, flags and selectors as tests/test_gallery.py.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
FACES = "#grid li.face img"
TOGGLES = "#attribute-boxes button.toggle"
PREFERRED_TOGGLES = ("Smiling", "Eyeglasses")
ALL_LOADED = ("sel => { const imgs = [...document.querySelectorAll(sel)];"
              " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Writes gallery.png and gallery-toggles.png into --out.")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models",
                        help="exported models to serve (default: the repository's models/)")
    parser.add_argument("--model", help="model to show (default: the one named in MODELS_DIR/DEFAULT)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images",
                        help="folder for the PNGs (default: docs/images)")
    parser.add_argument("--seed", type=int, default=1, help="first seed of the grid (default: 1)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                        help="Chromium executable (default: chromium on PATH, else /usr/bin/chromium)")
    return parser.parse_args(argv)


def wait_for_faces(page, *names: str) -> None:
    """Wait until every face in the grid asks for ``names`` (all set on) and has loaded."""
    if names:
        page.wait_for_function("([sel, names]) => [...document.querySelectorAll(sel)].every("
                               "i => names.every(n => new URL(i.src).searchParams.get('attrs')?.split(',')"
                               ".includes(n)))", arg=[FACES, list(names)], timeout=30_000)
    page.wait_for_function(ALL_LOADED, arg=FACES, timeout=30_000)


def switch_on(page, name: str) -> None:
    toggle = f'{TOGGLES}[data-attr="{name}"]'
    for _ in range(3):  # any -> on -> off -> any
        if page.get_attribute(toggle, "data-state") == "on":
            return
        page.click(toggle)
    sys.exit(f"error: the {name} toggle never showed 'on'")


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(args.chromium).is_file():
        sys.exit(f"error: no Chromium at {args.chromium} (apt-get install chromium, or pass --chromium PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("error: Playwright is not installed (pip install -r requirements-dev.txt)")

    from werkzeug.serving import make_server

    from app import ModelError, create_app

    try:
        flask_app = create_app({"FACEGEN_MODELS_DIR": str(args.models_dir), "FACEGEN_MODEL": args.model})
    except ModelError as error:
        sys.exit(f"error: no default model to show from {args.models_dir}: {error}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per face request

    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/?seed={args.seed}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            page.goto(url)
            wait_for_faces(page)
            page.screenshot(path=str(args.out / "gallery.png"))
            print(f"wrote {args.out / 'gallery.png'} ({url})")

            available = page.eval_on_selector_all(TOGGLES, "els => els.map(e => e.dataset.attr)")
            names = [n for n in PREFERRED_TOGGLES if n in available] or available[:2]
            if not names:
                print("note: the model has no attribute toggles; gallery-toggles.png not written")
            else:
                for name in names:
                    switch_on(page, name)
                wait_for_faces(page, *names)
                page.screenshot(path=str(args.out / "gallery-toggles.png"))
                print(f"wrote {args.out / 'gallery-toggles.png'} ({', '.join(names)} on: {page.url})")
            browser.close()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
