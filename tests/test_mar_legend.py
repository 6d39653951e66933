"""Issue 15 item 4 / issue 10 item 6: the meaning of the MAR's new fields, as the worklist (and so
every export) reads them: a held dose's reason code, a PRN dose's reason and effect, a new order's
prescriber and order time, and the performer of a slot put to a nurse of the sheet's legend."""
from fallbackkit.reconcile.legend import LegendEntry, legend_of, resolve_initials, unresolved_reason
from fallbackkit.reconcile.state import Val
from fallbackkit.reconcile.worklist import _new_order_items, _slot_items
from fallbackkit.store.kit import SHIPPED_TEMPLATES
from fallbackkit.templates import load_templates


def val(kind: str, value, source: str = "transcribe") -> Val:
    return Val.of(1, kind, value, value, True, 1 if value not in (None, "", False) else 0, "accepted", None, source)


def test_resolve_initials_fails_closed():
    legend = [LegendEntry(1, "A.D.", "Anne DUPONT", True), LegendEntry(2, "jm", "Jan MAES", True),
              LegendEntry(3, "JM", "Johan MERTENS", None)]
    assert resolve_initials(legend, "ad").name == "Anne DUPONT"
    assert resolve_initials(legend, " A D ").row == 1
    assert resolve_initials(legend, "JM") is None  # two nurses with the same initials: nobody
    assert "2 rows" in unresolved_reason(legend, "JM")
    assert resolve_initials(legend, "XY") is None and "not in the sheet's legend" in unresolved_reason(legend, "XY")
    assert resolve_initials(legend, None) is None and unresolved_reason(legend, "") is None
    assert unresolved_reason([], "AD") == "the sheet's legend is empty"
    rows = legend_of({"l1.initials": "AD", "l1.name": "Anne DUPONT", "l1.signature": True,
                      "l2.initials": None, "l2.name": "nobody", "last_name": "x"})
    assert rows == [LegendEntry(1, "AD", "Anne DUPONT", True)]


def test_slot_and_new_order_items_carry_the_new_fields():
    mar = load_templates(SHIPPED_TEMPLATES)["mar"]
    slot_rule = next(r for r in mar.reentry if r.each == "slot")
    order_rule = next(r for r in mar.reentry if r.each == "new-order")
    values = {
        "mar_date": val("datetime", "01/12/2026"),
        "l1.initials": val("initials", "AD"), "l1.name": val("text", "Anne DUPONT"),
        "l1.signature": val("signature", True),
        "m1.s1.status": val("choice", "held", "machine"), "m1.s1.time": val("datetime", None, "machine"),
        "m1.s1.initials": val("initials", "AD"), "m1.s1.held": val("number", "1"),
        "p1.s4.given": val("checkbox", True, "machine"), "p1.s4.time": val("datetime", "03:10"),
        "p1.s4.initials": val("initials", "ZZ"), "p1.s4.reason": val("number", "1"),
        "p1.s4.effect": val("choice", "better", "machine"),
        "n1.order": val("text", "Ceftriaxone 2 g IV daily"), "n1.prescriber": val("text", "Dr PEETERS"),
        "n1.ordered": val("datetime", "14:30"),
        "n1.s1.status": val("choice", None, "machine"),
    }
    form = {"context": {"medications": [{"line": 1, "medication": "Paracetamol", "dose": "1 g"},
                                         {"line": 2, "medication": "Morphine", "prn": True}]}}
    geometry = {"m1.s1.status": {"medication": 1, "scheduled": "06:00"}, "p1.s4.given": {"medication": 2}}
    names = sorted(values)
    items = {raw[0]: raw for raw in _slot_items(slot_rule, form, values, geometry, names)}
    held = items["m1.s1"][5]
    assert held["status"] == "held" and held["held_reason"] == "1" and held["held_reason_text"] == "nil by mouth"
    assert held["performer"] == {"initials": "AD", "name": "Anne DUPONT", "legend_row": 1, "signed": True}
    assert "m1.s1.held" in items["m1.s1"][2]  # the held code is one of the item's fields
    prn = items["p1.s4"][5]
    assert prn["prn_reason"] == "1" and prn["prn_reason_text"] == "pain" and prn["effect"] == "better"
    assert prn["performer"] is None
    assert prn["performer_unresolved"] == "initials ZZ are not in the sheet's legend"
    (order,) = list(_new_order_items(order_rule, form, values, geometry, names))
    assert order[3] == "2026-12-01T14:30" and order[5]["prescriber"] == "Dr PEETERS"
    assert "by Dr PEETERS" in order[4] and "n1.prescriber" in order[2]
