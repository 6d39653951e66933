"""Transaction bundles cut to what a receiving FHIR server accepts.

Some servers refuse big transactions: medplum's transaction processor refuses more than 8 entries
when any of them is conditional ("strict isolation"). A patient's bundle is therefore split into
parts of at most N entries. Each part is a complete transaction on its own: every resource a part's
entries reference (by their ``urn:uuid`` fullUrl) is repeated in that part. Repeating is safe
because every entry is conditional on a deterministic identifier: the server matches the copy to
the resource it already holds instead of creating a second one. Parts are written in dependency
order (a part never references a resource that only a later part creates).
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..errors import BadInput

_REFERENCE = re.compile(r'"(?:reference|url)":\s*"(urn:uuid:[0-9a-f-]{36})"')  # url: a page's Binary


def _references(entry: dict[str, Any]) -> list[str]:
    return _REFERENCE.findall(json.dumps(entry["resource"]))


def split_transaction(bundle: dict[str, Any], max_entries: int) -> list[dict[str, Any]]:
    """The bundle itself when it is small enough, else parts of at most max_entries entries."""
    entries = bundle["entry"]
    if max_entries < 1:
        raise BadInput(f"--max-entries {max_entries}: must be 1 or more")
    if len(entries) <= max_entries:
        return [bundle]
    by_url = {e["fullUrl"]: e for e in entries}
    position = {e["fullUrl"]: i for i, e in enumerate(entries)}

    def closure(url: str) -> list[str]:
        seen: list[str] = []
        todo = [url]
        while todo:
            u = todo.pop()
            if u in seen or u not in by_url:
                continue
            seen.append(u)
            todo.extend(_references(by_url[u]))
        return seen

    parts: list[list[str]] = []
    current: list[str] = []
    placed: set[str] = set()
    for entry in entries:
        url = entry["fullUrl"]
        if url in placed:
            continue
        need = closure(url)
        if len(need) > max_entries:
            raise BadInput(f"{entry['resource']['resourceType']} {url} needs {len(need)} entries with what it "
                           f"references, more than --max-entries {max_entries}",
                           hint=f"use --max-entries {len(need)} or more")
        merged = current + [u for u in need if u not in current]
        if len(merged) > max_entries:
            parts.append(current)
            merged = need
        current = merged
        placed.update(need)
    if current:
        parts.append(current)
    out = []
    for k, urls in enumerate(parts, start=1):
        part = {key: value for key, value in bundle.items() if key != "entry"}
        if "identifier" in part:
            part["identifier"] = {**part["identifier"], "value": f"{part['identifier']['value']}#{k}"}
        part["entry"] = [by_url[u] for u in sorted(urls, key=position.__getitem__)]
        out.append(part)
    return out


def _logical(entry: dict[str, Any]) -> dict[str, Any] | str | None:
    """How a batch entry refers to this entry's resource: a Binary by its id, anything else by the
    identifier its request is conditional on (a logical reference)."""
    from urllib.parse import parse_qsl, urlsplit
    rtype, req = entry["resource"]["resourceType"], entry["request"]
    if rtype == "Binary":
        return req["url"]
    query = req.get("ifNoneExist") or urlsplit(req["url"]).query
    for key, value in parse_qsl(query):
        if key == "identifier":
            system, _, code = value.partition("|")
            return {"type": rtype, "identifier": {"system": system, "value": code}}
    return None


def as_batch(bundle: dict[str, Any]) -> dict[str, Any]:
    """The same entries as a batch: no entry depends on another. A batch resolves no `urn:uuid`
    reference (and medplum's engine stores a conditional reference `Patient?identifier=...` in a
    batch as it is, unresolved), so each reference becomes a logical reference by identifier
    (`{type, identifier}`), and a page's attachment points at `Binary/<id>`."""
    logical = {e["fullUrl"]: _logical(e) for e in bundle["entry"]}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and isinstance(logical.get(ref), dict):
                return {**logical[ref], **({"display": node["display"]} if "display" in node else {})}
            out = {}
            for k, v in node.items():
                if k == "url" and isinstance(v, str) and isinstance(logical.get(v), str):
                    out[k] = logical[v]
                else:
                    out[k] = rewrite(v)
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    entries = [{"fullUrl": e["fullUrl"], "resource": rewrite(e["resource"]), "request": e["request"]}
               for e in bundle["entry"]]
    return {**{k: v for k, v in bundle.items() if k != "entry"}, "type": "batch", "entry": entries}
