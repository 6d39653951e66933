"""`templates preview`: a template printed for a made-up patient, to look at before using it.

The preview is printed by a throwaway kit in a temporary folder (its own secret, a generated
one-patient census with medications), so nothing is registered in the hospital's kit and its
sheets can never be read into it: scanned there they are quarantined as another kit's pages.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..store.kit import init_kit, now_iso
from ..templates.model import load_template
from .census import import_census
from .issue import print_blank, print_patient
from .sample import write_census


def preview_template(template_path: Path | str, out_path: Path | str, paper: str = "a4",
                     langs: tuple[str, ...] = ("en",)) -> dict[str, Any]:
    """Validate the template file and print one form of it with sample data to OUT (PDF)."""
    template_path = Path(template_path)
    template = load_template(template_path)  # the validation errors name the file and field
    with tempfile.TemporaryDirectory(prefix="fallbackkit-preview-") as tmp:
        root = Path(tmp)
        (root / "templates").mkdir()
        shutil.copy(template_path, root / "templates" / template_path.name)
        kit = init_kit(root / "kit", actor="preview", templates_from=root / "templates")
        try:
            if template.patient_bound:
                patients, meds = write_census(root / "census", {"SAMPLE": 1}, seed=3)
                import_census(kit, patients, meds, actor="preview", as_of=now_iso())
                mrn = kit.db.conn.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
                result = print_patient(kit, template.ref, mrn, out_path, paper, langs, actor="preview")
            else:
                result = print_blank(kit, template.ref, 1, out_path, paper, langs, actor="preview")
        finally:
            kit.close()
    return {"template": template.ref, "pages": len(result.sheets), "out": str(out_path),
            "reentry": [f"{r.kind} per {r.each}" + (f" -> FHIR {r.fhir}" if r.fhir != "none" else "")
                        for r in template.reentry]}
