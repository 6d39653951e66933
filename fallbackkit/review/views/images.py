"""Field crops, page images and the page with every field outlined."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, render_template, send_file

from .. import labels as lb
from .. import queue as q
from ..web import kit_path

bp = Blueprint("images", __name__)


@bp.get("/img/crop/<int:reading_id>")
def crop_image(reading_id: int):
    exists, crop = q.crop_path(g.kit.db, reading_id)
    if not exists:
        abort(404)
    if crop:  # a crop written at scan time (scans before crops were cut on demand)
        return send_file(q.kit_file(kit_path(), crop), max_age=0)
    from ...scan.crops import field_crop_png  # cut from the archived original, as the engine framed it
    png = field_crop_png(g.kit.db.conn, kit_path(), reading_id) or q.field_crop_from_page(
        g.kit.db, kit_path(), reading_id)
    if png is None:
        abort(404)
    return current_app.response_class(png, mimetype="image/png")


@bp.get("/img/page/<int:capture_id>")
def page_image(capture_id: int):
    """The page image: the cached copy, else made from the archived original (scan/pageview.py). An
    original missing or damaged is a 404 whose text says which file and what to do (the page and
    quarantine screens say it too), never a failure of the station."""
    from ...errors import NotFound
    from ...scan.pageview import PageImageUnavailable, page_image_png
    try:
        png = page_image_png(g.kit.db.conn, kit_path(), capture_id)
    except PageImageUnavailable as exc:
        current_app.logger.warning("%s", exc)
        return current_app.response_class(str(exc), status=404, mimetype="text/plain")
    except NotFound:
        abort(404)
    return current_app.response_class(png, mimetype="image/png", headers={"Cache-Control": "no-cache"})


@bp.get("/page/<int:capture_id>")
def page_view(capture_id: int):
    page = q.page_overlay(g.kit.db, capture_id, kit_path())
    table = lb.labels(kit_path(), page["capture"].get("template"), page["capture"].get("version"), g.lang)
    for f in page["fields"]:
        f["label"] = lb.field_label(table, f["field"])
    return render_template("page.html", page=page)
