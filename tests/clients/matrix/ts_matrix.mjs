// Client matrix, TypeScript SDK cell (@modelcontextprotocol/sdk 1.32.2 from tests/clients).
// Runs the matrix's scripted session against tests/conformance/fixture_server.mjs behind the
// bridge and prints one JSON line (see tests/client_matrix.rs for the fields).
//
//   node tests/clients/matrix/ts_matrix.mjs --transport streamable|sse --url URL
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ProgressNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const args = process.argv.slice(2);
const opt = (n) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const transportKind = opt('transport');
const url = opt('url');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const textOf = (r) => (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('');

function emit(obj, code) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
  process.exit(code);
}
setTimeout(() => emit({ ok: false, error: 'timeout after 60 s' }, 1), 60000).unref();

async function main() {
  if (!url || !['streamable', 'sse'].includes(transportKind)) throw new Error('usage: --transport streamable|sse --url URL');
  const out = { ok: false, client: 'typescript-sdk', transport: transportKind };
  const client = new Client({ name: 'mcp-bridge-matrix-ts', version: '0.0.0' }, { capabilities: { sampling: {}, elicitation: {} } });
  const samplingPrompts = [];
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    const prompt = req.params.messages.map((m) => m.content?.text ?? '').join(' ');
    samplingPrompts.push(prompt);
    return { role: 'assistant', content: { type: 'text', text: `sampled: ${prompt}` }, model: 'matrix', stopReason: 'endTurn' };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => ({
    action: 'accept',
    content: { username: 'matrix', email: 'matrix@example.com' },
  }));
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params.data));
  // Our own progress handler: the SDK's can drop a notification that shares a read with the response.
  const progressToken = `matrix-ts-${process.pid}`;
  const progress = [];
  client.setNotificationHandler(ProgressNotificationSchema, (n) => {
    if (n.params.progressToken === progressToken) progress.push(n.params.progress);
  });

  const transport = transportKind === 'sse' ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion ?? null;

  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  out.resources = (await client.listResources()).resources.map((r) => r.uri).sort();
  out.prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();
  out.echo = textOf(await client.callTool({ name: 'echo', arguments: { message: 'hello' } }));

  await client.setLoggingLevel('info');
  await client.callTool({ name: 'test_tool_with_logging', arguments: {} });
  for (let i = 0; i < 20 && logs.length < 3; i++) await sleep(50);
  out.logs = logs.length;

  await client.request(
    { method: 'tools/call', params: { name: 'test_tool_with_progress', arguments: {}, _meta: { progressToken } } },
    CallToolResultSchema,
  );
  for (let i = 0; i < 20 && progress.length < 3; i++) await sleep(50);
  out.progress = progress;

  const ac = new AbortController();
  const slow = client.callTool({ name: 'test_slow', arguments: { ms: 30000 } }, undefined, { signal: ac.signal });
  await sleep(300);
  ac.abort('matrix cancels');
  out.cancelCallRejected = await slow.then(
    () => false,
    () => true,
  );
  out.cancelled = textOf(await client.callTool({ name: 'test_cancellations', arguments: {} }));

  out.sampling = textOf(await client.callTool({ name: 'test_sampling', arguments: { prompt: 'matrix' } }));
  out.samplingRequests = samplingPrompts.length;
  out.elicitation = textOf(await client.callTool({ name: 'test_elicitation', arguments: { message: 'who are you?' } }));

  if (transportKind === 'streamable') await transport.terminateSession();
  await client.close();
  out.ok = true;
  return out;
}

main().then(
  (out) => emit(out, 0),
  (e) => emit({ ok: false, error: String(e?.stack ?? e) }, 1),
);
