// What both conformance fixtures serve alike (fixture_server.mjs, the 2025-11-25 one, and
// fixture_modern.mjs, the 2026-07-28 one): media, and the JSON Schema 2020-12 tool's schema.

function u32(n) { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }
function u16(n) { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; }

// A 1x1 red PNG and a tiny silent WAV (44-byte header + 2 samples).
export const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
export const WAV = Buffer.concat([
  Buffer.from('RIFF'), u32(40), Buffer.from('WAVEfmt '), u32(16), u16(1), u16(1), u32(8000), u32(16000), u16(2), u16(16),
  Buffer.from('data'), u32(4), Buffer.alloc(4),
]).toString('base64');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const text = (t) => ({ type: 'text', text: t });

// SEP-1613 keywords, plus the SEP-2106 vocabulary checked from 2026-07-28 on.
export const JSON_SCHEMA_2020_12 = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: {
    address: {
      $anchor: 'addressDef',
      type: 'object',
      properties: { street: { type: 'string' }, city: { type: 'string' } },
    },
  },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' },
    contactMethod: { type: 'string', enum: ['phone', 'email'] },
    phone: { type: 'string' },
    email: { type: 'string' },
  },
  allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
  if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
  then: { required: ['phone'] },
  else: { required: ['email'] },
  additionalProperties: false,
};
