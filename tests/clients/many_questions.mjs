#!/usr/bin/env node
// Opens many Streamable HTTP sessions at once with the official TypeScript SDK client; each calls a
// tool whose server asks the client a question back during the call (sampling for even sessions,
// elicitation for odd ones), answers it with an answer of its own, and reads the tool's result.
// Written for tests/remote_questions.rs: the tools are tests/conformance/fixture_server.mjs's
// `test_sampling` and `test_elicitation`.
//
//   node tests/clients/many_questions.mjs --url URL [--sessions 30] [--timeout SECONDS]
//
// Every session is started in the same tick. Prints one JSON line on stdout:
//   {"ok":bool,"sessions":N,"results":[{"session":i,"kind":"sampling"|"elicitation",
//     "asked":n,"text":"..."} or {..., "error":"..."}]}
// `ok` is true when every session got a tool result; the caller checks the texts. Exit 0 / 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

function parseArgs(argv) {
  const opts = { url: null, sessions: 30, timeout: 30 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case '--url': opts.url = next(); break;
      case '--sessions': opts.sessions = Number.parseInt(next(), 10); break;
      case '--timeout': opts.timeout = Number.parseFloat(next()); break;
      default: throw new Error(`unknown argument: ${a}`);
    }
  }
  if (!opts.url) throw new Error('--url is required');
  if (!Number.isInteger(opts.sessions) || opts.sessions < 1) throw new Error('--sessions must be a positive integer');
  if (!(opts.timeout > 0)) throw new Error('--timeout must be positive');
  return opts;
}

/** One session: connect, call the tool, answer its one question, return the result text. */
async function session(url, i, timeoutMs) {
  const kind = i % 2 === 0 ? 'sampling' : 'elicitation';
  const client = new Client({ name: `many-questions-${i}`, version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {} } });
  let asked = 0;
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    asked++;
    const texts = request.params.messages.map((m) => (m.content?.type === 'text' ? m.content.text : '')).join(' ');
    return { role: 'assistant', model: 'many-questions', content: { type: 'text', text: `sampled: ${texts}` } };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    asked++;
    return { action: 'accept', content: { username: `user-${i}`, email: `user-${i}@example.test` } };
  });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  try {
    await client.connect(transport, { timeout: timeoutMs });
    const call =
      kind === 'sampling'
        ? { name: 'test_sampling', arguments: { prompt: `question ${i}` } }
        : { name: 'test_elicitation', arguments: { message: `who is session ${i}?` } };
    const result = await client.callTool(call, undefined, { timeout: timeoutMs });
    const text = (result.content ?? []).map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n');
    return { session: i, kind, asked, text };
  } catch (e) {
    return { session: i, kind, asked, error: `${e?.name ?? 'Error'}: ${e?.message ?? e}` };
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close().catch(() => {});
  }
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: e.message }) + '\n');
  process.exit(1);
}
const started = Date.now();
const results = await Promise.all(Array.from({ length: opts.sessions }, (_, i) => session(opts.url, i, opts.timeout * 1000)));
const ok = results.every((r) => r.error === undefined);
const seconds = Math.round((Date.now() - started) / 100) / 10;
process.stdout.write(JSON.stringify({ ok, sessions: opts.sessions, seconds, results }) + '\n', () => process.exit(ok ? 0 : 1));
setTimeout(() => process.exit(ok ? 0 : 1), 2000).unref();
