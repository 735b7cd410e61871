#!/usr/bin/env node
// Validates an OpenAPI document with @seriousme/openapi-schema-validator (2.0 to 3.2), then
// dereferences it (every $ref must resolve).
//
//   node tests/clients/openapi_validate.mjs FILE.json
//
// Prints one JSON line: {"valid": bool, "version": "3.1", "errors": [...], "resolved": bool}.
import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';

const doc = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const validator = new Validator();
const res = await validator.validate(doc);
let resolved = false;
let resolveError = null;
if (res.valid) {
  try {
    validator.resolveRefs();
    resolved = true;
  } catch (e) {
    resolveError = String(e && e.message ? e.message : e);
  }
}
console.log(JSON.stringify({ valid: res.valid, version: validator.version, errors: res.errors ?? [], resolved, resolveError }));
