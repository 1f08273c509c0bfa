"""The gallery page: static HTML whose script talks to /api; nothing is rendered on the server but the shell."""

from flask import Blueprint, render_template

from app import limits, uploads

pages = Blueprint("pages", __name__)


@pages.get("/")
def gallery():
    # The page reads its own query (?model=&seed=&attrs=&psi=) in the browser, so shared links restore the view.
    return render_template("gallery.html", max_seed=limits.SEED_MAX, sizes=limits.SIZES,
                           max_upload_mb=uploads.MAX_UPLOAD_BYTES // (1024 * 1024))
