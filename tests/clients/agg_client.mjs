#!/usr/bin/env node
// Steps against an aggregate with the official TypeScript SDK client (tests/aggregates.rs).
//
//   node tests/clients/agg_client.mjs --transport sse|streamable --url URL --steps JSON [--timeout S]
//
// The client declares sampling (answers `sampled: <text>`), elicitation (accepts with
// {"answer": "yes"}) and roots. STEPS is a JSON array run in order; each step's outcome is
// one element of `results` in the one JSON line printed:
//   {"op":"tools"|"prompts"|"resources"|"templates"}       -> the names (URIs) listed
//   {"op":"call","name":N,"args":{...}}                     -> {"text"} or {"error":{code,message}}
//   {"op":"call_abort","name":N,"ms":M}                      -> the same, the call aborted after M ms
//   {"op":"read","uri":U} / {"op":"prompt","name":N}         -> the text, or {"error"}
//   {"op":"wait_tools_changed","ms":M}                       -> true if tools/list_changed came
// The line also has "elicitations" and "samplings" (how many questions were answered).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const opts = { timeout: 60 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) opts[argv[i].replace(/^--/, '')] = argv[i + 1];
const finish = (obj, code) => process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
setTimeout(() => finish({ ok: false, error: `timeout after ${opts.timeout}s` }, 1), Number(opts.timeout) * 1000).unref();

const textOf = r => (r.content || []).filter(c => c.type === 'text').map(c => c.text).join('');
const failure = e => ({ error: { code: e.code ?? null, message: String(e.message ?? e) } });

async function main() {
  const steps = JSON.parse(opts.steps);
  const client = new Client({ name: 'agg-client', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {}, roots: {} } });
  let samplings = 0, elicitations = 0, toolsChanged = 0;
  client.setRequestHandler(CreateMessageRequestSchema, async req => {
    samplings++;
    const msg = req.params.messages.map(m => m.content?.text ?? '').join(' ');
    return { role: 'assistant', model: 'test', content: { type: 'text', text: `sampled: ${msg}` } };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    elicitations++;
    return { action: 'accept', content: { answer: 'yes' } };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [] }));
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => { toolsChanged++; });
  const url = new URL(opts.url);
  const transport = opts.transport === 'sse' ? new SSEClientTransport(url) : new StreamableHTTPClientTransport(url);
  await client.connect(transport);
  const results = [];
  for (const s of steps) {
    try {
      switch (s.op) {
        case 'tools': results.push((await client.listTools()).tools.map(t => t.name)); break;
        case 'prompts': results.push((await client.listPrompts()).prompts.map(p => p.name)); break;
        case 'resources': results.push((await client.listResources()).resources.map(r => r.uri)); break;
        case 'templates': results.push((await client.listResourceTemplates()).resourceTemplates.map(r => r.uriTemplate)); break;
        case 'call': {
          const r = await client.callTool({ name: s.name, arguments: s.args ?? {} });
          results.push(r.isError ? { isError: textOf(r) } : { text: textOf(r) });
          break;
        }
        case 'call_abort': {
          const ac = new AbortController();
          setTimeout(() => ac.abort('the test gave up'), s.ms ?? 500);
          const r = await client.callTool({ name: s.name, arguments: s.args ?? {} }, undefined, { signal: ac.signal });
          results.push({ text: textOf(r) });
          break;
        }
        case 'read': results.push((await client.readResource({ uri: s.uri })).contents.map(c => c.text ?? '').join('')); break;
        case 'prompt': results.push((await client.getPrompt({ name: s.name })).messages.map(m => m.content?.text ?? '').join('')); break;
        case 'wait_tools_changed': {
          const until = Date.now() + (s.ms ?? 5000);
          while (toolsChanged === 0 && Date.now() < until) await new Promise(r => setTimeout(r, 50));
          results.push(toolsChanged > 0);
          toolsChanged = 0;
          break;
        }
        default: throw new Error(`unknown op ${s.op}`);
      }
    } catch (e) {
      results.push(failure(e));
    }
  }
  await client.close();
  finish({ ok: true, results, samplings, elicitations }, 0);
}
main().catch(e => finish({ ok: false, error: String(e?.stack ?? e) }, 1));
