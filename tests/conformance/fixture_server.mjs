// The legacy (2025-11-25) MCP server behind mcp-bridge in the conformance run: every tool, resource
// and prompt the server scenarios of @modelcontextprotocol/conformance ask for, written with the
// official TypeScript SDK (@modelcontextprotocol/sdk 1.32.2, low-level `Server` so that JSON
// Schemas pass through untouched, and so that a thrown McpError becomes a JSON-RPC error).
//
// Besides the 2025 scenarios it carries what the 2026-07-28 scenarios need when the bridge maps
// them onto a legacy session (the `modern-stdio` run): the server-stateless diagnostic tools
// (test_missing_capability, test_logging_tool, test_streaming_elicitation, test_trigger_*),
// test_x_mcp_header, and the multi-round-trip tools and prompt written the 2025 way, with
// server-to-client requests that the bridge turns into InputRequiredResult. A legacy server does
// not choose the inputRequests keys (the bridge does), so the scenarios that insist on keys like
// "user_name" cannot pass through that path. These extras are listed only with `--modern-extras`
// (the client matrix, tests/client_matrix.rs, expects the exact 2025 lists).
//
//   node fixture_server.mjs stdio [--modern-extras]          # one session over stdin/stdout
//   PORT=0 node fixture_server.mjs http [--modern-extras] [--standalone-requests [--close-get-stream]]
//                                         # Streamable HTTP on 127.0.0.1; prints `listening <url>`
//
// With --standalone-requests the sampling and elicitation of the 2025 scenario tools (test_sampling,
// test_elicitation, test_elicitation_sep1034_defaults, test_elicitation_sep1330_enums) are sent as
// the conformance suite's reference everything-server sends them: `server.request` with no related
// request id. Over HTTP the SDK then writes them on the session's standalone GET stream, and when no
// GET stream is open yet it only stores them (for a `Last-Event-ID` replay that a first GET never
// asks for): the question is lost and the tool call waits until the SDK's 60 s request timeout.
// With --close-get-stream as well, each such question is asked while the GET stream is closed, as a
// polling server does (see event_store.mjs): only a GET that resumes with `Last-Event-ID` gets it.
//
// In http mode each session has its own Server and transport, with an in-memory event store so
// that the SEP-1699 scenarios (priming events, `retry:`, polling after closeSSEStream) apply.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { MemoryEventStore, closesGetStreams, withRetryHint } from './event_store.mjs';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  GetPromptRequestSchema,
  ListRootsResultSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ErrorCode,
  ReadResourceRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

import { JSON_SCHEMA_2020_12, PNG, WAV, sleep, text } from './fixture_common.mjs';

const noArgs = { type: 'object', properties: {} };

const TOOLS = [
  { name: 'test_simple_text', description: 'Returns simple text', inputSchema: noArgs },
  { name: 'test_image_content', description: 'Returns a PNG image', inputSchema: noArgs },
  { name: 'test_audio_content', description: 'Returns a WAV clip', inputSchema: noArgs },
  { name: 'test_embedded_resource', description: 'Returns an embedded resource', inputSchema: noArgs },
  { name: 'test_multiple_content_types', description: 'Returns text, image and resource', inputSchema: noArgs },
  { name: 'test_tool_with_logging', description: 'Logs three messages while it runs', inputSchema: noArgs },
  { name: 'test_error_handling', description: 'Always fails', inputSchema: noArgs },
  { name: 'test_tool_with_progress', description: 'Reports progress 0, 50, 100', inputSchema: noArgs },
  {
    name: 'test_sampling',
    description: 'Asks the client to sample',
    inputSchema: { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
  },
  {
    name: 'test_elicitation',
    description: 'Asks the client for input',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  },
  { name: 'test_elicitation_sep1034_defaults', description: 'Elicitation with defaults (SEP-1034)', inputSchema: noArgs },
  { name: 'test_elicitation_sep1330_enums', description: 'Elicitation with enum schemas (SEP-1330)', inputSchema: noArgs },
  { name: 'test_reconnection', description: 'Closes its SSE stream mid-call, then answers (SEP-1699)', inputSchema: noArgs },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: JSON_SCHEMA_2020_12,
  },
  // For the 2026-07-28 scenarios through the bridge (server-stateless, SEP-2243, SEP-2322);
  // listed with --modern-extras only (see MODERN_EXTRAS).
  { name: 'test_missing_capability', description: 'Needs the client capability sampling (-32021 without it)', inputSchema: noArgs },
  { name: 'test_logging_tool', description: 'Logs at debug, info, warning and error', inputSchema: noArgs },
  { name: 'test_streaming_elicitation', description: 'Asks the client for its name (elicitation)', inputSchema: noArgs },
  { name: 'test_trigger_tool_change', description: 'Sends notifications/tools/list_changed', inputSchema: noArgs },
  { name: 'test_trigger_prompt_change', description: 'Sends notifications/prompts/list_changed', inputSchema: noArgs },
  {
    name: 'test_x_mcp_header',
    description: 'Mirrors region into the Mcp-Param-Region header (SEP-2243)',
    inputSchema: {
      type: 'object',
      properties: { region: { type: 'string', description: 'A region', 'x-mcp-header': 'Region' } },
      required: ['region'],
    },
  },
  { name: 'test_input_required_result_elicitation', description: 'Asks for a name, then greets', inputSchema: noArgs },
  { name: 'test_input_required_result_sampling', description: 'Asks the client to sample', inputSchema: noArgs },
  { name: 'test_input_required_result_list_roots', description: 'Asks for the client roots', inputSchema: noArgs },
  { name: 'test_input_required_result_request_state', description: 'Asks to confirm', inputSchema: noArgs },
  { name: 'test_input_required_result_multiple_inputs', description: 'Asks name, greeting and roots at once', inputSchema: noArgs },
  { name: 'test_input_required_result_multi_round', description: 'Asks a name, then a colour', inputSchema: noArgs },
  { name: 'test_input_required_result_tampered_state', description: 'Asks to confirm', inputSchema: noArgs },
  { name: 'test_input_required_result_capabilities', description: 'Asks only for what the client declared', inputSchema: noArgs },
  // Used by the client matrix (tests/client_matrix.rs).
  {
    name: 'echo',
    description: 'Echoes its message',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  },
  {
    name: 'test_slow',
    description: 'Waits `ms` milliseconds (default 30000) unless cancelled',
    inputSchema: { type: 'object', properties: { ms: { type: 'number' } } },
  },
  {
    name: 'test_cancellations',
    description: 'How many test_slow calls of this session were cancelled (waits up to 3 s for one)',
    inputSchema: noArgs,
  },
];

const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', description: 'A static text resource', mimeType: 'text/plain' },
  { uri: 'test://static-binary', name: 'static-binary', description: 'A static PNG', mimeType: 'image/png' },
  { uri: 'test://watched-resource', name: 'watched-resource', description: 'A resource to subscribe to', mimeType: 'text/plain' },
];

const PROMPTS = [
  { name: 'test_simple_prompt', description: 'A prompt without arguments' },
  {
    name: 'test_prompt_with_arguments',
    description: 'A prompt with two arguments',
    arguments: [
      { name: 'arg1', description: 'First argument', required: true },
      { name: 'arg2', description: 'Second argument', required: true },
    ],
  },
  {
    name: 'test_prompt_with_embedded_resource',
    description: 'A prompt embedding a resource',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
  },
  { name: 'test_prompt_with_image', description: 'A prompt with an image' },
  { name: 'test_input_required_result_prompt', description: 'Asks the client for context first (elicitation)' },
];

// The tools and prompts for the 2026-07-28 scenarios: listed (and callable) with --modern-extras only.
const MODERN_EXTRAS = process.argv.includes('--modern-extras');
const isExtra = (name) =>
  /^test_(missing_capability|logging_tool|streaming_elicitation|trigger_tool_change|trigger_prompt_change|x_mcp_header)$/.test(name) ||
  name.startsWith('test_input_required_result_');
const LISTED_TOOLS = TOOLS.filter((t) => MODERN_EXTRAS || !isExtra(t.name));
const LISTED_PROMPTS = PROMPTS.filter((p) => MODERN_EXTRAS || !isExtra(p.name));
// See the header: the scenario tools' questions go to the standalone stream, not the call's own.
const STANDALONE_REQUESTS = process.argv.includes('--standalone-requests');
// See event_store.mjs: the question comes while the upstream's GET stream is closed.
const CLOSE_GET_STREAM = process.argv.includes('--close-get-stream');

const askString = (message, field) => ({
  message,
  requestedSchema: { type: 'object', properties: { [field]: { type: 'string' } }, required: [field] },
});
const confirmSchema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
const samplingReply = (r) => (r.content?.type === 'text' ? r.content.text : JSON.stringify(r.content));

function makeServer() {
  const server = new Server(
    { name: 'mcp-bridge-conformance-fixture', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
    },
  );
  const subscriptions = new Set();
  let cancellations = 0;

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: LISTED_TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const args = req.params.arguments ?? {};
    const log = (data, level = 'info') =>
      extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'fixture', data } });
    // Server-to-client requests on the request's own stream (the bridge maps them to MRTR).
    const elicit = (params) => extra.sendRequest({ method: 'elicitation/create', params }, ElicitResultSchema);
    const sample = (prompt, maxTokens) =>
      extra.sendRequest(
        { method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: text(prompt) }], maxTokens } },
        CreateMessageResultSchema,
      );
    const roots = () => extra.sendRequest({ method: 'roots/list' }, ListRootsResultSchema);
    // The 2025 scenario tools' questions: tied to this call, or (--standalone-requests) not.
    const ask = async (request, schema) => {
      if (!STANDALONE_REQUESTS) return extra.sendRequest(request, schema);
      if (CLOSE_GET_STREAM) await closesGetStreams(server, extra);
      return server.request(request, schema);
    };
    if (!MODERN_EXTRAS && isExtra(req.params.name)) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
    switch (req.params.name) {
      case 'test_simple_text':
        return { content: [text('This is a simple text response for testing.')] };
      case 'test_image_content':
        return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] };
      case 'test_audio_content':
        return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] };
      case 'test_embedded_resource':
        return {
          content: [
            {
              type: 'resource',
              resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
            },
          ],
        };
      case 'test_multiple_content_types':
        return {
          content: [
            text('Multiple content types test:'),
            { type: 'image', data: PNG, mimeType: 'image/png' },
            {
              type: 'resource',
              resource: {
                uri: 'test://mixed-content-resource',
                mimeType: 'application/json',
                text: JSON.stringify({ test: 'data', value: 123 }),
              },
            },
          ],
        };
      case 'test_tool_with_logging':
        await log('Tool execution started');
        await sleep(50);
        await log('Tool processing data');
        await sleep(50);
        await log('Tool execution completed');
        return { content: [text('Tool with logging executed successfully')] };
      case 'test_error_handling':
        return { isError: true, content: [text('This tool intentionally returns an error for testing')] };
      case 'test_tool_with_progress': {
        const token = req.params._meta?.progressToken;
        for (const [i, p] of [0, 50, 100].entries()) {
          if (i > 0) await sleep(50);
          if (token !== undefined) {
            await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: p, total: 100 } });
          }
        }
        return { content: [text(`Progress tool finished (token ${JSON.stringify(token ?? null)})`)] };
      }
      case 'test_sampling': {
        const r = await ask(
          {
            method: 'sampling/createMessage',
            params: { messages: [{ role: 'user', content: text(String(args.prompt ?? '')) }], maxTokens: 100 },
          },
          CreateMessageResultSchema,
        );
        const reply = r.content?.type === 'text' ? r.content.text : JSON.stringify(r.content);
        return { content: [text(`LLM response: ${reply}`)] };
      }
      case 'test_elicitation': {
        const r = await ask(
          {
            method: 'elicitation/create',
            params: {
              message: String(args.message ?? ''),
              requestedSchema: {
                type: 'object',
                properties: {
                  username: { type: 'string', description: "User's response" },
                  email: { type: 'string', description: "User's email address" },
                },
                required: ['username', 'email'],
              },
            },
          },
          ElicitResultSchema,
        );
        // Keys sorted, so that every client of the matrix gets the same text.
        const content = Object.fromEntries(Object.entries(r.content ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
        return { content: [text(`User response: action=${r.action}, content=${JSON.stringify(content)}`)] };
      }
      case 'test_elicitation_sep1034_defaults': {
        const r = await ask(
          {
            method: 'elicitation/create',
            params: {
              message: 'Please confirm (defaults provided)',
              requestedSchema: {
                type: 'object',
                properties: {
                  name: { type: 'string', description: 'User name', default: 'John Doe' },
                  age: { type: 'integer', description: 'User age', default: 30 },
                  score: { type: 'number', description: 'User score', default: 95.5 },
                  status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
                  verified: { type: 'boolean', description: 'Verified', default: true },
                },
              },
            },
          },
          ElicitResultSchema,
        );
        return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
      }
      case 'test_elicitation_sep1330_enums': {
        const r = await ask(
          {
            method: 'elicitation/create',
            params: {
              message: 'Pick options',
              requestedSchema: {
                type: 'object',
                properties: {
                  untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
                  titledSingle: {
                    type: 'string',
                    oneOf: [
                      { const: 'value1', title: 'First Option' },
                      { const: 'value2', title: 'Second Option' },
                      { const: 'value3', title: 'Third Option' },
                    ],
                  },
                  legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
                  untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
                  titledMulti: {
                    type: 'array',
                    items: {
                      anyOf: [
                        { const: 'value1', title: 'First Choice' },
                        { const: 'value2', title: 'Second Choice' },
                        { const: 'value3', title: 'Third Choice' },
                      ],
                    },
                  },
                },
              },
            },
          },
          ElicitResultSchema,
        );
        return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
      }
      case 'test_reconnection': {
        // Over HTTP with an event store this closes the POST stream; the client (here: the
        // bridge) must come back with GET + Last-Event-ID to get the result.
        await sleep(100);
        const closed = typeof extra.closeSSEStream === 'function';
        if (closed) extra.closeSSEStream();
        await sleep(300);
        return { content: [text(`Reconnection test completed (stream closed: ${closed})`)] };
      }
      case 'json_schema_2020_12_tool':
        return { content: [text(`json_schema_2020_12_tool: ${JSON.stringify(args)}`)] };
      case 'echo':
        return { content: [text(`Echo: ${args.message}`)] };
      case 'test_missing_capability':
        if (!server.getClientCapabilities()?.sampling) {
          throw new McpError(-32021, 'This tool requires the sampling client capability', {
            requiredCapabilities: { sampling: {} },
          });
        }
        return { content: [text(`LLM response: ${samplingReply(await sample('Say something', 20))}`)] };
      case 'test_logging_tool':
        for (const level of ['debug', 'info', 'warning', 'error']) {
          await log(`a ${level} message`, level);
          await sleep(20);
        }
        return { content: [text('Logged at debug, info, warning and error')] };
      case 'test_streaming_elicitation': {
        await log('about to ask for input');
        const r = await server.elicitInput(askString('What is your name?', 'name'), { relatedRequestId: extra.requestId });
        return { content: [text(r.action === 'accept' ? `Hello, ${r.content?.name}!` : `No name (${r.action})`)] };
      }
      case 'test_trigger_tool_change':
        await server.sendToolListChanged();
        return { content: [text('tools list changed')] };
      case 'test_trigger_prompt_change':
        await server.sendPromptListChanged();
        return { content: [text('prompts list changed')] };
      case 'test_x_mcp_header':
        return { content: [text(`region: ${args.region}`)] };
      case 'test_input_required_result_elicitation': {
        const r = await elicit(askString('What is your name?', 'name'));
        return { content: [text(`Hello, ${r.content?.name}!`)] };
      }
      case 'test_input_required_result_sampling':
        return { content: [text(`Sampling answered: ${samplingReply(await sample('What is the capital of France?', 100))}`)] };
      case 'test_input_required_result_list_roots': {
        const r = await roots();
        return { content: [text(`Client roots: ${r.roots.map((x) => x.uri).join(', ') || '(none)'}`)] };
      }
      case 'test_input_required_result_request_state':
      case 'test_input_required_result_tampered_state': {
        // The requestState is the bridge's: it reached this session only if the bridge verified it.
        const r = await elicit({ message: 'Please confirm', requestedSchema: confirmSchema });
        return { content: [text(`state-ok: confirmed=${JSON.stringify(r.content?.ok ?? null)} (action ${r.action})`)] };
      }
      case 'test_input_required_result_multiple_inputs': {
        const [n, g, rt] = await Promise.all([elicit(askString('What is your name?', 'name')), sample('Generate a greeting', 50), roots()]);
        return { content: [text(`name=${n.content?.name}; greeting=${samplingReply(g)}; roots=${rt.roots.length}`)] };
      }
      case 'test_input_required_result_multi_round': {
        const n = await elicit(askString('Step 1: What is your name?', 'name'));
        const c = await elicit(askString('Step 2: What is your favorite color?', 'color'));
        return { content: [text(`${n.content?.name}'s favourite colour is ${c.content?.color}`)] };
      }
      case 'test_input_required_result_capabilities': {
        const caps = server.getClientCapabilities() ?? {};
        const asked = [];
        if (caps.elicitation) asked.push(elicit(askString('What is your name?', 'name')).then(() => 'elicitation'));
        if (caps.sampling) asked.push(sample('Generate a greeting', 50).then(() => 'sampling'));
        if (caps.roots) asked.push(roots().then(() => 'roots'));
        return { content: [text(`asked: ${(await Promise.all(asked)).join(', ') || '(nothing)'}`)] };
      }
      case 'test_slow': {
        const ms = Number(args.ms ?? 30000);
        await new Promise((resolve) => {
          const t = setTimeout(resolve, ms);
          extra.signal.addEventListener('abort', () => {
            cancellations += 1;
            clearTimeout(t);
            resolve();
          });
        });
        return { content: [text(extra.signal.aborted ? 'cancelled' : `slept ${ms} ms`)] };
      }
      case 'test_cancellations':
        for (let i = 0; i < 60 && cancellations === 0; i++) await sleep(50);
        return { content: [text(`cancelled: ${cancellations}`)] };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
    }
  });

  server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: RESOURCES }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [
      { uriTemplate: 'test://template/{id}/data', name: 'template-data', description: 'Data by id', mimeType: 'application/json' },
    ],
  }));
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => {
    const uri = req.params.uri;
    if (uri === 'test://static-text') {
      return { contents: [{ uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] };
    }
    if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: PNG }] };
    if (uri === 'test://watched-resource') return { contents: [{ uri, mimeType: 'text/plain', text: 'Watched resource content.' }] };
    const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (m) {
      const id = decodeURIComponent(m[1]);
      return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] };
    }
    throw new McpError(-32002, `Resource not found: ${uri}`, { uri });
  });
  server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    subscriptions.add(req.params.uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    subscriptions.delete(req.params.uri);
    return {};
  });

  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: LISTED_PROMPTS }));
  server.setRequestHandler(GetPromptRequestSchema, async (req, extra) => {
    const a = req.params.arguments ?? {};
    if (!MODERN_EXTRAS && isExtra(req.params.name)) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${req.params.name}`);
    switch (req.params.name) {
      case 'test_input_required_result_prompt': {
        const r = await extra.sendRequest(
          { method: 'elicitation/create', params: askString('What context should the prompt use?', 'context') },
          ElicitResultSchema,
        );
        return { messages: [{ role: 'user', content: text(`Use this context: ${r.content?.context}`) }] };
      }
      case 'test_simple_prompt':
        return { messages: [{ role: 'user', content: text('This is a simple prompt for testing.') }] };
      case 'test_prompt_with_arguments':
        return { messages: [{ role: 'user', content: text(`Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'`) }] };
      case 'test_prompt_with_embedded_resource':
        return {
          messages: [
            {
              role: 'user',
              content: {
                type: 'resource',
                resource: { uri: String(a.resourceUri), mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
              },
            },
            { role: 'user', content: text('Please process the embedded resource above.') },
          ],
        };
      case 'test_prompt_with_image':
        return {
          messages: [
            { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
            { role: 'user', content: text('Please analyze the image above.') },
          ],
        };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${req.params.name}`);
    }
  });

  server.setRequestHandler(CompleteRequestSchema, async (req) => {
    const value = String(req.params.argument?.value ?? '');
    const values = ['paris', 'park', 'party', 'test', 'testValue1'].filter((v) => v.startsWith(value));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  return server;
}

async function serveHttp() {
  const sessions = new Map();
  const httpServer = http.createServer(async (req, res) => {
    try {
      if (!req.url.startsWith('/mcp')) {
        res.writeHead(404).end('not found');
        return;
      }
      let body;
      if (req.method === 'POST') {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
      }
      const sid = req.headers['mcp-session-id'];
      let transport = sid ? sessions.get(sid) : undefined;
      const isInit = body && !Array.isArray(body) && body.method === 'initialize';
      if (!transport && isInit) {
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          eventStore: new MemoryEventStore(),
          retryInterval: 500,
          onsessioninitialized: (id) => sessions.set(id, transport),
        });
        transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
        await makeServer().connect(transport);
      }
      if (!transport) {
        res.writeHead(sid ? 404 : 400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: sid ? 'Session not found' : 'No session' } }));
        return;
      }
      if (CLOSE_GET_STREAM && req.method === 'GET') withRetryHint(res);
      await transport.handleRequest(req, res, body);
    } catch (e) {
      console.error('fixture: request failed:', e);
      if (!res.headersSent) res.writeHead(500).end(String(e));
    }
  });
  const port = Number(process.env.PORT ?? 0);
  httpServer.listen(port, '127.0.0.1', () => {
    console.log(`listening http://127.0.0.1:${httpServer.address().port}/mcp`);
  });
  const stop = () => httpServer.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const mode = process.argv[2] ?? 'stdio';
if (mode === 'stdio') {
  // Exit when the client (the bridge) goes away, even with server-to-client requests pending.
  process.stdin.on('end', () => process.exit(0));
  await makeServer().connect(new StdioServerTransport());
} else if (mode === 'http') {
  await serveHttp();
} else {
  console.error(`usage: fixture_server.mjs stdio|http (got ${mode})`);
  process.exit(2);
}
