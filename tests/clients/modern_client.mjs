#!/usr/bin/env node
// Scripted MCP session over protocol revision 2026-07-28 ("stateless" Streamable HTTP)
// using ONLY the official v2 TypeScript client, @modelcontextprotocol/client.
//
//   node tests/clients/modern_client.mjs URL [--steps a,b,c] [--timeout SECONDS]
//        [--id-tag TAG] [--listen-trigger TOOL]
//
// URL is the MCP endpoint (e.g. http://127.0.0.1:8080/mcp/everything); `--url URL` works too.
// The protocol is PINNED: versionNegotiation {pin: '2026-07-28'} means connect() sends
// server/discover and fails if the server does not offer 2026-07-28. There is no fallback
// to initialize; after connect the script additionally asserts era 'modern', negotiated
// version 2026-07-28 and no Mcp-Session-Id, and fails otherwise.
//
// Steps (default: all, in this order):
//   discover     explicit server/discover: supportedVersions + capability keys
//   tools        tools/list -> names
//   resources    resources/list -> uris
//   prompts      prompts/list -> names
//   echo         tools/call echo -> must be "Echo: hello[-TAG]"
//   progress     tools/call trigger-long-running-operation duration=2 steps=4 with onprogress;
//                >= 3 notifications/progress required (4 expected)
//   cancel       tools/call trigger-long-running-operation duration=30 steps=30, aborted
//                (AbortController) after the first progress notification or 1 s; the SDK
//                closes that POST's SSE response (2026-07-28 cancellation). Must reject
//                with an abort within 5 s.
//   sampling     tools/call trigger-sampling-request: the server answers InputRequiredResult
//                (sampling/createMessage); the SDK's MRTR driver calls our handler, which
//                answers "sampled: <prompt text>", and retries; result must contain it.
//   elicitation  tools/call trigger-elicitation-request: same via elicitation/create; we
//                accept with {name: "Bridge Tester[-TAG]", other required fields canned}.
//   listen       subscriptions/listen {tools,prompts,resources}ListChanged: honoredFilter;
//                with --listen-trigger TOOL, calls TOOL and waits for >= 1 list_changed
//                notification on the stream; then closes and checks the close reason.
//
// Prints exactly one JSON line on stdout: {"ok":true,...} (exit 0) or
// {"ok":false,"error":"...","step":"...",...partial results} (exit 1). Diagnostics go
// to stderr. Every wait is bounded (--timeout per step, default 30 s; global watchdog).
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const MODERN = '2026-07-28';
const ALL_STEPS = ['discover', 'tools', 'resources', 'prompts', 'echo', 'progress', 'cancel', 'sampling', 'elicitation', 'listen'];

// Tool names as shipped by @modelcontextprotocol/server-everything 2026.8.31
// (also served by tests/clients/modern_server.mjs).
const TOOL_ECHO = 'echo';
const TOOL_LONG = 'trigger-long-running-operation';
const TOOL_SAMPLING = 'trigger-sampling-request';
const TOOL_ELICIT = 'trigger-elicitation-request';

function parseArgs(argv) {
  const o = { url: null, steps: ALL_STEPS, timeout: 30, idTag: null, listenTrigger: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`); return argv[++i]; };
    switch (a) {
      case '--url': o.url = next(); break;
      case '--steps': o.steps = next().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--timeout': o.timeout = Number.parseFloat(next()); break;
      case '--id-tag': o.idTag = next(); break;
      case '--listen-trigger': o.listenTrigger = next(); break;
      default:
        if (a.startsWith('--') || o.url) throw new Error(`unknown argument: ${a}`);
        o.url = a;
    }
  }
  if (!o.url) throw new Error('usage: modern_client.mjs URL [--steps ' + ALL_STEPS.join(',') + '] [--timeout S] [--id-tag TAG] [--listen-trigger TOOL]');
  for (const s of o.steps) if (!ALL_STEPS.includes(s)) throw new Error(`unknown step: ${s} (known: ${ALL_STEPS.join(',')})`);
  if (!(o.timeout > 0)) throw new Error('--timeout must be positive');
  return o;
}

const log = (...a) => process.stderr.write(`[modern_client] ${a.join(' ')}\n`);
const out = { ok: false };
let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}
function fail(err, step) {
  out.ok = false;
  out.error = err?.stack && process.env.MODERN_CLIENT_STACK ? err.stack : String(err?.message ?? err);
  if (err?.code !== undefined) out.errorCode = err.code;
  if (step) out.step = step;
  log('ERROR', step ? `in step ${step}:` : '', err?.stack ?? err);
  finish(1);
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}
const textOf = (result) => (result?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

// Canned answer for a form elicitation: every required field gets a value.
function cannedElicitContent(schema, name) {
  const content = {};
  const props = schema?.properties ?? {};
  for (const key of schema?.required ?? []) {
    const p = props[key] ?? {};
    if (key === 'name') content[key] = name;
    else if (p.default !== undefined) content[key] = p.default;
    else if (p.enum) content[key] = p.enum[0];
    else if (p.oneOf?.[0]?.const !== undefined) content[key] = p.oneOf[0].const;
    else if (p.type === 'boolean') content[key] = true;
    else if (p.type === 'integer' || p.type === 'number') content[key] = p.minimum ?? 1;
    else if (p.type === 'array') content[key] = [p.items?.enum?.[0] ?? p.items?.anyOf?.[0]?.const].filter((x) => x !== undefined);
    else if (p.format === 'email') content[key] = 'tester@example.com';
    else if (p.format === 'uri') content[key] = 'https://example.com/';
    else if (p.format === 'date') content[key] = '2000-01-01';
    else content[key] = 'test';
  }
  return content;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const ms = Math.round(opts.timeout * 1000);
  const tag = opts.idTag ? `-${opts.idTag}` : '';
  // Global watchdog: all steps together may not exceed steps * per-step timeout + connect.
  setTimeout(() => fail(new Error('global watchdog expired')), ms * (opts.steps.length + 2)).unref();

  const samplingPrompts = [];
  const elicitations = [];
  const client = new Client(
    { name: 'mcp-bridge-modern-client', version: '0.0.0' },
    {
      capabilities: { sampling: {}, elicitation: { form: {} } },
      versionNegotiation: { mode: { pin: MODERN }, probe: { timeoutMs: ms } },
      inputRequired: { autoFulfill: true, maxRounds: 4 },
    },
  );
  client.onerror = (e) => log('client onerror:', e?.message ?? e);

  // MRTR: embedded requests of an InputRequiredResult are dispatched to these handlers.
  client.setRequestHandler('sampling/createMessage', async (request) => {
    const msg = request.params.messages.at(-1);
    const prompt = msg?.content?.type === 'text' ? msg.content.text : JSON.stringify(msg?.content);
    samplingPrompts.push(prompt);
    return { model: 'canned-model', role: 'assistant', stopReason: 'endTurn', content: { type: 'text', text: `sampled: ${prompt}` } };
  });
  client.setRequestHandler('elicitation/create', async (request) => {
    elicitations.push(request.params.message);
    return { action: 'accept', content: cannedElicitContent(request.params.requestedSchema, `Bridge Tester${tag}`) };
  });

  const listChanged = [];
  for (const m of ['notifications/tools/list_changed', 'notifications/prompts/list_changed', 'notifications/resources/list_changed']) {
    client.setNotificationHandler(m, () => { listChanged.push(m); });
  }

  const transport = new StreamableHTTPClientTransport(new URL(opts.url), {
    reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 },
  });

  let step = 'connect';
  try {
    await withTimeout(client.connect(transport, { timeout: ms }), ms + 1000, 'connect (server/discover probe)');
    out.era = client.getProtocolEra();
    out.protocolVersion = client.getNegotiatedProtocolVersion();
    out.sessionId = transport.sessionId ?? null;
    if (out.era !== 'modern' || out.protocolVersion !== MODERN) {
      throw new Error(`ended up on a legacy session: era=${out.era} protocolVersion=${out.protocolVersion}`);
    }
    if (out.sessionId) throw new Error(`2026-07-28 has no sessions, but got Mcp-Session-Id ${out.sessionId}`);
    const connectDiscover = client.getDiscoverResult();
    out.serverInfo = client.getServerVersion() ?? null;
    log(`connected: era=${out.era} version=${out.protocolVersion} server=${JSON.stringify(out.serverInfo)}`);
    const reqOpts = { timeout: ms };

    for (step of opts.steps) {
      log(`step ${step}`);
      switch (step) {
        case 'discover': {
          const d = await withTimeout(client.discover(reqOpts), ms, 'server/discover');
          if (!d.supportedVersions?.includes(MODERN)) throw new Error(`server/discover does not list ${MODERN}: ${JSON.stringify(d.supportedVersions)}`);
          out.discover = {
            supportedVersions: d.supportedVersions,
            capabilities: Object.keys(d.capabilities ?? {}).sort(),
            connectProbeVersions: connectDiscover?.supportedVersions ?? null,
          };
          break;
        }
        case 'tools': {
          const r = await withTimeout(client.listTools(undefined, { ...reqOpts, cacheMode: 'bypass' }), ms, 'tools/list');
          out.tools = r.tools.map((t) => t.name);
          if (!out.tools.includes(TOOL_ECHO)) throw new Error(`tools/list lacks ${TOOL_ECHO}: ${out.tools.join(',')}`);
          break;
        }
        case 'resources': {
          const r = await withTimeout(client.listResources(undefined, { ...reqOpts, cacheMode: 'bypass' }), ms, 'resources/list');
          out.resources = r.resources.map((x) => x.uri);
          break;
        }
        case 'prompts': {
          const r = await withTimeout(client.listPrompts(undefined, { ...reqOpts, cacheMode: 'bypass' }), ms, 'prompts/list');
          out.prompts = r.prompts.map((p) => p.name);
          break;
        }
        case 'echo': {
          const want = `Echo: hello${tag}`;
          const r = await withTimeout(client.callTool({ name: TOOL_ECHO, arguments: { message: `hello${tag}` } }, reqOpts), ms, 'echo');
          out.echo = textOf(r);
          if (r.isError || out.echo !== want) throw new Error(`echo returned ${JSON.stringify(r)} (want ${want})`);
          break;
        }
        case 'progress': {
          const values = [];
          const r = await withTimeout(client.callTool(
            { name: TOOL_LONG, arguments: { duration: 2, steps: 4 } },
            { ...reqOpts, onprogress: (p) => values.push(p.progress) },
          ), ms, 'long-running operation with progress');
          if (r.isError) throw new Error(`long-running tool failed: ${textOf(r)}`);
          out.progress = values.length;
          out.progressValues = values;
          if (values.length < 3) throw new Error(`expected >= 3 progress notifications, got ${values.length}`);
          break;
        }
        case 'cancel': {
          const ac = new AbortController();
          let progressSeen = 0;
          const started = Date.now();
          const call = client.callTool(
            { name: TOOL_LONG, arguments: { duration: 30, steps: 30 } },
            { ...reqOpts, signal: ac.signal, onprogress: () => { if (++progressSeen === 1) ac.abort(new Error('cancelled by modern_client')); } },
          );
          const fallback = setTimeout(() => ac.abort(new Error('cancelled by modern_client')), 1500);
          let settled;
          try {
            settled = await withTimeout(call.then(() => 'resolved', (e) => e), Math.min(ms, 10000), 'aborted call to settle');
          } finally { clearTimeout(fallback); }
          if (settled === 'resolved') throw new Error('aborted call resolved instead of rejecting');
          out.cancelled = ac.signal.aborted;
          out.cancelAfterProgress = progressSeen;
          out.cancelMs = Date.now() - started;
          out.cancelError = String(settled?.message ?? settled);
          if (!out.cancelled) throw new Error(`call failed without being aborted: ${out.cancelError}`);
          if (out.cancelMs > 5000) throw new Error(`abort took ${out.cancelMs} ms`);
          // The connection must still be usable afterwards (no session to break, but check anyway).
          await withTimeout(client.callTool({ name: TOOL_ECHO, arguments: { message: `after-cancel${tag}` } }, reqOpts), ms, 'echo after cancel');
          break;
        }
        case 'sampling': {
          const before = samplingPrompts.length;
          const r = await withTimeout(client.callTool({ name: TOOL_SAMPLING, arguments: { prompt: `hello${tag}`, maxTokens: 16 } }, reqOpts), ms, 'sampling via MRTR');
          const txt = textOf(r);
          const prompts = samplingPrompts.slice(before);
          out.samplingRequests = prompts.length;
          if (r.isError) throw new Error(`sampling tool failed: ${txt}`);
          if (prompts.length !== 1) throw new Error(`expected 1 sampling request, got ${prompts.length}`);
          if (!txt.includes(`sampled: ${prompts[0]}`)) throw new Error(`sampling result lacks our answer: ${txt}`);
          out.sampling = `sampled: ${prompts[0]}`;
          break;
        }
        case 'elicitation': {
          const before = elicitations.length;
          const r = await withTimeout(client.callTool({ name: TOOL_ELICIT, arguments: {} }, reqOpts), ms, 'elicitation via MRTR');
          const txt = textOf(r);
          out.elicitationRequests = elicitations.length - before;
          if (r.isError) throw new Error(`elicitation tool failed: ${txt}`);
          if (out.elicitationRequests !== 1) throw new Error(`expected 1 elicitation request, got ${out.elicitationRequests}`);
          if (!txt.includes(`Bridge Tester${tag}`)) throw new Error(`elicitation result lacks our answer: ${txt}`);
          out.elicitation = txt;
          break;
        }
        case 'listen': {
          const filter = { toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true };
          const sub = await withTimeout(client.listen(filter, reqOpts), ms, 'subscriptions/listen acknowledgement');
          out.listen = { honoredFilter: sub.honoredFilter };
          if (opts.listenTrigger) {
            const before = listChanged.length;
            await withTimeout(client.callTool({ name: opts.listenTrigger, arguments: {} }, reqOpts), ms, `listen trigger ${opts.listenTrigger}`);
            const deadline = Date.now() + Math.min(ms, 10000);
            while (listChanged.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
            out.listen.notifications = listChanged.slice(before);
            if (out.listen.notifications.length === 0) throw new Error('no list_changed notification on the listen stream');
          }
          await withTimeout(sub.close(), ms, 'listen close');
          out.listen.closed = await withTimeout(sub.closed, ms, 'listen closed promise');
          if (out.listen.closed !== 'local') throw new Error(`listen closed as ${out.listen.closed}, expected local`);
          break;
        }
      }
    }
    step = 'close';
    await withTimeout(client.close(), ms, 'close');
    out.ok = true;
    finish(0);
  } catch (e) {
    out.listChangedSeen = listChanged.length;
    try { await withTimeout(client.close(), 2000, 'close after error'); } catch { /* ignore */ }
    fail(e, step);
  }
}

process.on('unhandledRejection', (e) => fail(e, 'unhandledRejection'));
main().catch((e) => fail(e));
