#!/usr/bin/env node
// Scripted MCP session using the official TypeScript SDK client.
//
//   node tests/clients/ts_client.mjs --transport sse|streamable --url URL
//        [--scenario full|basic] [--id-tag TAG] [--repeat N] [--timeout SECONDS]
//
// Prints exactly one JSON line on stdout: {"ok":true,...} (exit 0) or
// {"ok":false,"error":"..."} (exit 1). Diagnostics go to stderr.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ProgressNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

// Tool names as shipped by @modelcontextprotocol/server-everything 2026.8.31.
const TOOL_ECHO = 'echo';
const TOOL_SUM = 'get-sum';
const TOOL_LONG = 'trigger-long-running-operation';
const TOOL_SAMPLING = 'trigger-sampling-request'; // only listed for clients declaring `sampling`

const PROGRESS_DURATION = 2; // seconds
const PROGRESS_STEPS = 4;

function parseArgs(argv) {
  const opts = { transport: null, url: null, scenario: 'full', idTag: null, repeat: 1, timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case '--transport': opts.transport = next(); break;
      case '--url': opts.url = next(); break;
      case '--scenario': opts.scenario = next(); break;
      case '--id-tag': opts.idTag = next(); break;
      case '--repeat': opts.repeat = Number.parseInt(next(), 10); break;
      case '--timeout': opts.timeout = Number.parseFloat(next()); break;
      default: throw new Error(`unknown argument: ${a}`);
    }
  }
  if (!['sse', 'streamable'].includes(opts.transport)) throw new Error('--transport must be sse or streamable');
  if (!opts.url) throw new Error('--url is required');
  if (!['full', 'basic'].includes(opts.scenario)) throw new Error('--scenario must be full or basic');
  if (!Number.isInteger(opts.repeat) || opts.repeat < 1) throw new Error('--repeat must be a positive integer');
  if (!(opts.timeout > 0)) throw new Error('--timeout must be positive');
  return opts;
}

let finished = false;
function finish(obj, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
  // In case the write callback never fires.
  setTimeout(() => process.exit(code), 2000).unref();
}
function fail(err) {
  const msg = err instanceof Error ? err.message : String(err);
  finish({ ok: false, error: msg }, 1);
}
function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
function textOf(result) {
  assert(result && Array.isArray(result.content), 'tool result has content[]');
  assert(!result.isError, `tool result isError: ${JSON.stringify(result.content)}`);
  return result.content.filter(c => c.type === 'text').map(c => c.text).join('');
}
const sleep = ms => new Promise(r => setTimeout(r, ms));

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const watchdog = setTimeout(() => fail(new Error(`timeout after ${opts.timeout}s`)), opts.timeout * 1000);
  watchdog.unref();

  const tag = opts.idTag;
  const tagPart = tag ? `-${tag}` : '';
  const out = { ok: false, transport: opts.transport, scenario: opts.scenario };

  const client = new Client(
    { name: 'mcp-bridge-ts-test-client', version: '0.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
  );

  let samplingRequests = 0;
  let sampledText = null;
  client.setRequestHandler(CreateMessageRequestSchema, async request => {
    samplingRequests++;
    const texts = request.params.messages
      .map(m => (m.content && m.content.type === 'text' ? m.content.text : ''))
      .join(' ');
    sampledText = `sampled: ${texts}`;
    return {
      role: 'assistant',
      content: { type: 'text', text: sampledText },
      model: 'mcp-bridge-fixed-model',
      stopReason: 'endTurn',
    };
  });
  // server-everything calls roots/list shortly after initialize when roots is declared.
  let rootsRequests = 0;
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    rootsRequests++;
    return { roots: [] };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));

  // Our own progress handler (replaces the SDK's internal one, which can drop a
  // progress notification that arrives in the same read as the final response).
  const progressToken = `ts-progress${tagPart}-${process.pid}`;
  const progressSeen = [];
  const foreignProgress = [];
  client.setNotificationHandler(ProgressNotificationSchema, n => {
    if (n.params.progressToken === progressToken) progressSeen.push(n.params.progress);
    else foreignProgress.push(n.params.progressToken);
  });

  const url = new URL(opts.url);
  const transport = opts.transport === 'sse'
    ? new SSEClientTransport(url)
    : new StreamableHTTPClientTransport(url);
  let closing = false;
  transport.onerror = e => {
    // aborts while we close the session are expected noise
    if (!closing) process.stderr.write(`[ts_client] transport error: ${e && e.message}\n`);
  };

  await client.connect(transport);
  if (opts.transport === 'streamable') out.protocolVersion = transport.protocolVersion ?? null;
  out.sessionId = opts.transport === 'sse'
    ? (transport._endpoint ? transport._endpoint.searchParams.get('sessionId') : null)
    : (transport.sessionId ?? null);
  out.server = client.getServerVersion()?.name ?? null;

  // tools/list (retry briefly if conditional tools are not yet registered: the
  // server registers them when it processes notifications/initialized).
  const required = opts.scenario === 'full' ? [TOOL_ECHO, TOOL_SUM, TOOL_LONG, TOOL_SAMPLING] : [TOOL_ECHO];
  let tools = [];
  let attempts = 0;
  for (; attempts < 20; attempts++) {
    tools = (await client.listTools()).tools.map(t => t.name);
    if (required.every(n => tools.includes(n))) break;
    await sleep(100);
  }
  out.toolListAttempts = attempts + 1;
  out.tools = tools;
  for (const n of required) assert(tools.includes(n), `tool ${n} listed (got ${tools.join(',')})`);

  // echo (repeat N, each message carries its own tag + index)
  let lastEcho = null;
  for (let i = 0; i < opts.repeat; i++) {
    const msg = `hello${tagPart}-${i}`;
    const r = await client.callTool({ name: TOOL_ECHO, arguments: { message: msg } });
    const text = textOf(r);
    assert(text === `Echo: ${msg}`, `echo ${i} returned its own message (sent ${JSON.stringify(msg)}, got ${JSON.stringify(text)})`);
    lastEcho = text;
  }
  out.echo = lastEcho;
  out.echoCount = opts.repeat;

  if (opts.scenario === 'full') {
    // get-sum
    const sumText = textOf(await client.callTool({ name: TOOL_SUM, arguments: { a: 2, b: 3 } }));
    const m = /is (-?[\d.]+)\.?$/.exec(sumText);
    assert(m && Number(m[1]) === 5, `get-sum(2,3) is 5 (got ${JSON.stringify(sumText)})`);
    out.sum = Number(m[1]);

    // long-running operation with progress
    const longText = textOf(await client.callTool({
      name: TOOL_LONG,
      arguments: { duration: PROGRESS_DURATION, steps: PROGRESS_STEPS },
      _meta: { progressToken },
    }));
    assert(/completed/i.test(longText), `long-running op completed (got ${JSON.stringify(longText)})`);
    // let any notification handler still queued in the microtask/event queue run
    for (let i = 0; i < 10 && progressSeen.length < PROGRESS_STEPS; i++) await sleep(50);
    out.progress = progressSeen.length;
    out.progressValues = progressSeen;
    assert(progressSeen.length >= PROGRESS_STEPS - 1,
      `>= ${PROGRESS_STEPS - 1} progress notifications (got ${progressSeen.length})`);
    assert(foreignProgress.length === 0, `no progress for foreign tokens (got ${JSON.stringify(foreignProgress)})`);

    // sampling round trip: client -> server tool -> server sampling request -> client -> server -> client
    const prompt = `ping${tagPart}`;
    const sampleResult = textOf(await client.callTool({ name: TOOL_SAMPLING, arguments: { prompt, maxTokens: 20 } }));
    assert(samplingRequests === 1, `exactly one sampling request (got ${samplingRequests})`);
    assert(sampledText && sampledText.includes(prompt), `sampling request carried our prompt (got ${JSON.stringify(sampledText)})`);
    assert(sampleResult.includes(sampledText), `sampling tool result contains our sampled text (got ${JSON.stringify(sampleResult)})`);
    out.sampling = sampledText;
    out.samplingRequests = samplingRequests;
  }
  out.rootsRequests = rootsRequests;

  closing = true;
  if (opts.transport === 'streamable') {
    await transport.terminateSession(); // DELETE; 405 is accepted by the SDK
    out.terminated = true;
  }
  await client.close();
  out.ok = true;
  clearTimeout(watchdog);
  // put ok first for readability
  const { ok, ...rest } = out;
  finish({ ok, ...rest }, 0);
}

main().catch(fail);
