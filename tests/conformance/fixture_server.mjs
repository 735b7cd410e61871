// The MCP server behind mcp-bridge in the conformance run: every tool, resource and prompt the
// server scenarios of @modelcontextprotocol/conformance 0.1.16 ask for, written with the official
// TypeScript SDK (@modelcontextprotocol/sdk 1.32.2, low-level `Server` so that JSON Schemas pass
// through untouched).
//
//   node fixture_server.mjs stdio          # one session over stdin/stdout
//   PORT=0 node fixture_server.mjs http    # Streamable HTTP on 127.0.0.1; prints `listening <url>`
//
// In http mode each session has its own Server and transport, with an in-memory event store so
// that the SEP-1699 scenarios (priming events, `retry:`, polling after closeSSEStream) apply.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  GetPromptRequestSchema,
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

// A 1x1 red PNG and a tiny silent WAV (44-byte header + 2 samples).
const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = Buffer.concat([
  Buffer.from('RIFF'), u32(40), Buffer.from('WAVEfmt '), u32(16), u16(1), u16(1), u32(8000), u32(16000), u16(2), u16(16),
  Buffer.from('data'), u32(4), Buffer.alloc(4),
]).toString('base64');
function u32(n) { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }
function u16(n) { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ type: 'text', text: t });
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
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
  },
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
];

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

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const args = req.params.arguments ?? {};
    const log = (data) =>
      extra.sendNotification({ method: 'notifications/message', params: { level: 'info', logger: 'fixture', data } });
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
        const r = await extra.sendRequest(
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
        const r = await extra.sendRequest(
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
        const r = await extra.sendRequest(
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
        const r = await extra.sendRequest(
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
    throw new McpError(-32002, `Resource not found: ${uri}`);
  });
  server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    subscriptions.add(req.params.uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    subscriptions.delete(req.params.uri);
    return {};
  });

  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));
  server.setRequestHandler(GetPromptRequestSchema, async (req) => {
    const a = req.params.arguments ?? {};
    switch (req.params.name) {
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

/** The smallest event store the SDK's resumability needs: every event of every stream, in order. */
class MemoryEventStore {
  constructor() {
    this.events = [];
  }
  async storeEvent(streamId, message) {
    const eventId = `${streamId}_${this.events.length}`;
    this.events.push({ eventId, streamId, message });
    return eventId;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.eventId === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const i = this.events.findIndex((e) => e.eventId === lastEventId);
    if (i < 0) return '';
    const streamId = this.events[i].streamId;
    for (const e of this.events.slice(i + 1)) {
      if (e.streamId === streamId && Object.keys(e.message).length > 0) await send(e.eventId, e.message);
    }
    return streamId;
  }
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
  await makeServer().connect(new StdioServerTransport());
} else if (mode === 'http') {
  await serveHttp();
} else {
  console.error(`usage: fixture_server.mjs stdio|http (got ${mode})`);
  process.exit(2);
}
