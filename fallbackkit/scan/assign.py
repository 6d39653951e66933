"""Quarantined pages a clerk identifies by the sheet id printed on them: read again as that sheet."""
from __future__ import annotations

from pathlib import Path
from typing import Any


from .. import ids
from ..errors import BadInput, Conflict, IntegrityFailure, NotFound, NotPermitted
from ..store import quarantine as store_quarantine
from ..store.audit import append_audit
from ..store.captures import CaptureSummary, ScannedPage, page_image_rel, store_page
from ..store.captures import capture_summary as store_capture_summary
from ..store.kit import Kit
from ..store.transactions import atomic
from .ingest import PageReader
from .page_task import _result_dict, _save_crops


def list_quarantine(kit: Kit, include_assigned: bool = False) -> list[dict[str, Any]]:
    """The quarantine listing (`store.quarantine.list_quarantine`) as `quarantine list --json` shows
    it: the record's names, and the two older names scripts may read (page, image)."""
    return [{**item.as_dict(), "page": item.page_index, "image": item.image_path}
            for item in store_quarantine.list_quarantine(kit.db.conn, include_assigned)]


def capture_summary(kit: Kit, capture_id: int) -> CaptureSummary:
    """What a capture holds (`store.captures.capture_summary`)."""
    return store_capture_summary(kit.db.conn, capture_id)


# A page whose code was forged or signed by another kit is not read in on a clerk's word alone.
UNTRUSTED_REASONS = {"bad_signature": "its sheet code is not signed by this kit (forged, altered or damaged)",
                     "foreign_kit": "its sheet code belongs to another kit"}


def _said(exc: Exception, code: str, **params: Any) -> Exception:
    """The error as a code and parameters too (exc.said), for the station to say in the clerk's language."""
    exc.said = (code, params)  # type: ignore[attr-defined]
    return exc


def assign_quarantined(kit: Kit, quarantine_id: int, sheet_id: str, actor: str, supervisor: bool = False) -> int:
    """A clerk read the sheet id printed on a quarantined page: read the page as that sheet.

    Returns the new capture id (source 'assigned'). The archived original is read again, so the
    result does not depend on any earlier, failed attempt. A page quarantined as bad_signature or
    foreign_kit is assigned only by a supervisor (supervisor=True), and its audit row says so.
    """
    from ..generate import sheet_geometry
    from .engine import read_page_as
    conn = kit.db.conn
    typed = sheet_id
    sheet_id = ids.normalize(sheet_id)
    if not ids.is_valid(sheet_id, 8):
        raise _said(BadInput(f"{typed!r} is not a valid sheet id",
                             hint="a sheet id is 9 characters printed under the QR code; the last one is a check "
                                  "character: read it again"), "not_a_sheet_id", typed=typed)
    item = store_quarantine.require_quarantined(conn, quarantine_id)
    sha, page_index, archive_rel, kind, reason = item.sha256, item.page_index, item.archive_path, item.kind, item.reason
    if reason in UNTRUSTED_REASONS and not supervisor:
        raise _said(NotPermitted(f"quarantined page {quarantine_id} is {reason}: {UNTRUSTED_REASONS[reason]}; "
                                 "only a supervisor may read it in",
                                 hint="ask a supervisor to check the paper and identify it (in the review station, "
                                      "or `fallbackkit --user SUPERVISOR quarantine assign`)"),
                    "supervisor_only_page", page=quarantine_id)
    if item.assigned_sheet_id is not None:
        raise _said(Conflict(f"quarantined page {quarantine_id} is already assigned to sheet "
                             f"{item.assigned_sheet_id} (capture {item.assigned_capture_id})"),
                    "already_assigned", page=quarantine_id, sheet=item.assigned_sheet_id,
                    capture=item.assigned_capture_id)
    try:
        geometry = sheet_geometry(kit, sheet_id)
    except NotFound as exc:
        raise _said(exc, "no_such_sheet", sheet=sheet_id)
    if not archive_rel or not (kit.path / archive_rel).exists():
        raise NotFound(f"the archived original of quarantined page {quarantine_id} is missing ({archive_rel})",
                       hint="restore the kit's archive folder from a backup")
    reader = PageReader(kit.path / archive_rel, kind)
    try:
        page = reader.page(page_index)
    finally:
        reader.close()
    try:
        result = read_page_as(page.image, geometry)
    except Exception as exc:  # an engine bug: say so plainly, store nothing
        raise IntegrityFailure(f"the reader failed on quarantined page {quarantine_id}: "
                               f"{type(exc).__name__}: {exc}",
                               hint="nothing was stored; tell IT (run with --verbose for details)") from exc
    if result.status != "read":
        raise _said(BadInput(f"page {quarantine_id} cannot be read as sheet {sheet_id}: "
                             f"{result.reason}{' (' + result.detail + ')' if result.detail else ''}",
                             hint="check the sheet id; if it is right, the page must be entered by hand"),
                    "cannot_read_as", page=quarantine_id, sheet=sheet_id, reason=result.reason,
                    detail=result.detail)
    out = _result_dict(result, page.dpi)
    stem = f"{sha}-p{page_index}-assigned"
    out["image_path"] = page_image_rel(sha, page_index, assigned=True)  # made when shown (pageview.py)
    _save_crops(kit.path, Path("crops") / sha[:2] / stem, out)
    out.update(sha=sha, index=page_index, width_px=int(page.image.shape[1]), height_px=int(page.image.shape[0]),
               template=geometry["template"], version=geometry["version"], page=geometry["page"],
               pages=geometry["pages"])
    # the capture, its readings, the assignment and the audit row: one transaction
    with atomic(conn):
        stored = store_page(conn, ScannedPage.from_result(out), source="assigned", sheet_id=sheet_id)
        if stored is None:
            raise Conflict(f"quarantined page {quarantine_id} is already assigned")
        store_quarantine.record_assignment(conn, item, sheet_id, stored.capture_id, actor)
        append_audit(conn, actor, "quarantine.assign", f"quarantine:{quarantine_id}", None,
                     {"sheet_id": sheet_id, "capture_id": stored.capture_id,
                      "duplicate_of": stored.duplicate_of, "readings": stored.accepted + stored.review,
                      "quarantine_reason": reason,
                      **({"supervisor_override": UNTRUSTED_REASONS[reason]} if reason in UNTRUSTED_REASONS else {})})
    return stored.capture_id
