// Client matrix, TypeScript v2 cell (@modelcontextprotocol/client 2.4.0 from tests/clients),
// speaking protocol revision 2026-07-28 to the same endpoint as the other cells (/mcp/matrix).
// Runs the matrix's scripted session against tests/conformance/fixture_server.mjs behind the
// bridge (which serves each request on a backing session of the 2025 fixture) and prints one
// JSON line with the same fields as ts_matrix.mjs (see tests/client_matrix.rs).
//
//   node tests/clients/matrix/ts_modern_matrix.mjs --url URL
//
// The version is pinned (versionNegotiation {mode: {pin: '2026-07-28'}}): connect() sends
// server/discover and fails unless the server offers 2026-07-28; the script then checks the
// era is 'modern' and no Mcp-Session-Id came back. What differs from the 2025 cells:
//   4  logging: no logging/setLevel in 2026-07-28; the logging call carries
//      _meta io.modelcontextprotocol/logLevel = info (per request);
//   6  cancellation: aborting the call closes its POST response (the revision's cancellation);
//      there is no session whose server could count it afterwards, so the cell reports only
//      that the call was rejected; the test checks the bridge log for the cancelled request;
//   7/8 sampling and elicitation arrive as an InputRequiredResult; the SDK's MRTR driver calls
//      the same handlers and retries with inputResponses.
import { Client, LOG_LEVEL_META_KEY, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const MODERN = '2026-07-28';
const args = process.argv.slice(2);
const opt = (n) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const url = opt('url');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const textOf = (r) => (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('');
const STEP_MS = 15000;
const reqOpts = { timeout: STEP_MS };

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

let finished = false;
function emit(obj, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify(obj)}\n`, () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}
setTimeout(() => emit({ ok: false, error: 'timeout after 60 s' }, 1), 60000).unref();

async function main() {
  if (!url) throw new Error('usage: --url URL');
  const out = { ok: false, client: 'typescript-sdk-v2', transport: 'streamable' };
  const client = new Client(
    { name: 'mcp-bridge-matrix-ts-modern', version: '0.0.0' },
    {
      capabilities: { sampling: {}, elicitation: { form: {} } },
      versionNegotiation: { mode: { pin: MODERN }, probe: { timeoutMs: STEP_MS } },
      inputRequired: { autoFulfill: true, maxRounds: 4 },
    },
  );
  const samplingPrompts = [];
  client.setRequestHandler('sampling/createMessage', async (req) => {
    const prompt = req.params.messages.map((m) => m.content?.text ?? '').join(' ');
    samplingPrompts.push(prompt);
    return { role: 'assistant', content: { type: 'text', text: `sampled: ${prompt}` }, model: 'matrix', stopReason: 'endTurn' };
  });
  client.setRequestHandler('elicitation/create', async () => ({
    action: 'accept',
    content: { username: 'matrix', email: 'matrix@example.com' },
  }));
  const logs = [];
  client.setNotificationHandler('notifications/message', (n) => logs.push(n.params.data));

  const transport = new StreamableHTTPClientTransport(new URL(url), {
    reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 },
  });
  await withTimeout(client.connect(transport, { timeout: STEP_MS }), STEP_MS + 1000, 'connect (server/discover probe)');
  out.era = client.getProtocolEra();
  out.protocolVersion = client.getNegotiatedProtocolVersion() ?? null;
  out.sessionId = transport.sessionId ?? null;
  if (out.era !== 'modern' || out.protocolVersion !== MODERN) {
    throw new Error(`not on 2026-07-28: era=${out.era} protocolVersion=${out.protocolVersion}`);
  }

  const list = { ...reqOpts, cacheMode: 'bypass' };
  out.tools = (await withTimeout(client.listTools(undefined, list), STEP_MS, 'tools/list')).tools.map((t) => t.name).sort();
  out.resources = (await withTimeout(client.listResources(undefined, list), STEP_MS, 'resources/list')).resources.map((r) => r.uri).sort();
  out.prompts = (await withTimeout(client.listPrompts(undefined, list), STEP_MS, 'prompts/list')).prompts.map((p) => p.name).sort();
  out.echo = textOf(await withTimeout(client.callTool({ name: 'echo', arguments: { message: 'hello' } }, reqOpts), STEP_MS, 'echo'));

  // 4: per-request log level instead of logging/setLevel.
  await withTimeout(
    client.callTool({ name: 'test_tool_with_logging', arguments: {}, _meta: { [LOG_LEVEL_META_KEY]: 'info' } }, reqOpts),
    STEP_MS,
    'test_tool_with_logging',
  );
  for (let i = 0; i < 20 && logs.length < 3; i++) await sleep(50);
  out.logs = logs.length;

  const progress = [];
  await withTimeout(
    client.callTool({ name: 'test_tool_with_progress', arguments: {} }, { ...reqOpts, onprogress: (p) => progress.push(p.progress) }),
    STEP_MS,
    'test_tool_with_progress',
  );
  for (let i = 0; i < 20 && progress.length < 3; i++) await sleep(50);
  out.progress = progress;

  // 6: abort = close the response.
  const ac = new AbortController();
  const slow = client.callTool({ name: 'test_slow', arguments: { ms: 30000 } }, { ...reqOpts, timeout: 60000, signal: ac.signal });
  await sleep(300);
  ac.abort(new Error('matrix cancels'));
  out.cancelCallRejected = await withTimeout(
    slow.then(
      () => false,
      () => true,
    ),
    5000,
    'the aborted call to settle',
  );

  out.sampling = textOf(
    await withTimeout(client.callTool({ name: 'test_sampling', arguments: { prompt: 'matrix' } }, reqOpts), STEP_MS, 'test_sampling'),
  );
  out.samplingRequests = samplingPrompts.length;
  out.elicitation = textOf(
    await withTimeout(
      client.callTool({ name: 'test_elicitation', arguments: { message: 'who are you?' } }, reqOpts),
      STEP_MS,
      'test_elicitation',
    ),
  );

  // Any response of the run could have carried one; there must be none.
  out.sessionId = out.sessionId ?? transport.sessionId ?? null;
  await withTimeout(client.close(), 5000, 'close');
  out.ok = true;
  return out;
}

process.on('unhandledRejection', (e) => emit({ ok: false, error: `unhandledRejection: ${String(e?.stack ?? e)}` }, 1));
main().then(
  (out) => emit(out, 0),
  (e) => emit({ ok: false, error: String(e?.stack ?? e) }, 1),
);
