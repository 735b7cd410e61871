// A 2026-07-28 ("stateless", per-request `_meta` envelope) MCP server for the conformance run:
// every tool, resource and prompt the server scenarios of @modelcontextprotocol/conformance
// 0.2.0-alpha.12 ask for at `--spec-version 2026-07-28`, written with the official v2 TypeScript
// SDK (@modelcontextprotocol/server 2.4.0, `McpServer` + `createMcpHandler`, served on node:http
// through @modelcontextprotocol/node's `toNodeHandler`).
//
//   PORT=0 node fixture_modern.mjs     # Streamable HTTP on 127.0.0.1, path /mcp; prints `listening <url>`
//
// The same factory also answers 2025-era traffic (the SDK's stateless legacy fallback), which is
// how mcp-bridge's `server/discover` probe tells it apart from a legacy upstream.
//
// Multi-round-trip (SEP-2322) tools return `inputRequired(...)` with the exact `inputRequests`
// keys the scenarios name; `requestState` is sealed with the SDK's HMAC codec
// (`createRequestStateCodec`, a per-process random key), so a tampered state is refused with
// -32602 before any handler runs.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import {
  McpServer,
  ResourceTemplate,
  createMcpHandler,
  createRequestStateCodec,
  fromJsonSchema,
  inputRequired,
  inputResponse,
  acceptedContent,
} from '@modelcontextprotocol/server';
import { localhostHostValidation, localhostOriginValidation, toNodeHandler } from '@modelcontextprotocol/node';

import { JSON_SCHEMA_2020_12, PNG, WAV, sleep, text } from './fixture_common.mjs';

const result = (t) => ({ content: [text(t)] });
const schema = (s) => fromJsonSchema(s);
const noArgs = () => schema({ type: 'object', properties: {} });
const stringArgs = (...names) =>
  schema({ type: 'object', properties: Object.fromEntries(names.map((n) => [n, { type: 'string' }])), required: names });

const CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
const codec = createRequestStateCodec({ key: randomBytes(32), ttlSeconds: 600 });

/** The client capabilities of this request: the 2026 envelope, or what the legacy session declared. */
function clientCapabilities(ctx, mcp) {
  return ctx.mcpReq.envelope?.[CLIENT_CAPABILITIES] ?? mcp.server.getClientCapabilities?.() ?? {};
}

/** An elicitation request for one string field. */
const askString = (message, field) =>
  inputRequired.elicit({
    message,
    requestedSchema: { type: 'object', properties: { [field]: { type: 'string' } }, required: [field] },
  });

/** The value of `field` in an accepted elicitation answer under `key`, if it is a string. */
function answered(ctx, key, field) {
  const c = acceptedContent(ctx.mcpReq.inputResponses, key);
  return typeof c?.[field] === 'string' ? c[field] : undefined;
}

function samplingText(view) {
  const c = view.kind === 'sampling' ? view.result.content : undefined;
  const block = Array.isArray(c) ? c[0] : c;
  return block?.type === 'text' ? block.text : JSON.stringify(block ?? null);
}

let handler; // set below; the trigger tools publish on its listen bus

function makeServer() {
  const mcp = new McpServer(
    { name: 'mcp-bridge-conformance-modern-fixture', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
      requestState: { verify: codec.verify },
    },
  );
  const tool = (name, description, inputSchema, cb) => mcp.registerTool(name, { description, inputSchema }, cb);

  // --- the content tools of the 2025 suite -------------------------------------------------
  tool('test_simple_text', 'Returns simple text', noArgs(), () => result('This is a simple text response for testing.'));
  tool('test_image_content', 'Returns a PNG image', noArgs(), () => ({
    content: [{ type: 'image', data: PNG, mimeType: 'image/png' }],
  }));
  tool('test_audio_content', 'Returns a WAV clip', noArgs(), () => ({
    content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }],
  }));
  tool('test_embedded_resource', 'Returns an embedded resource', noArgs(), () => ({
    content: [
      {
        type: 'resource',
        resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
      },
    ],
  }));
  tool('test_multiple_content_types', 'Returns text, image and resource', noArgs(), () => ({
    content: [
      text('Multiple content types test:'),
      { type: 'image', data: PNG, mimeType: 'image/png' },
      {
        type: 'resource',
        resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) },
      },
    ],
  }));
  tool('test_tool_with_logging', 'Logs three messages while it runs', noArgs(), async (_args, ctx) => {
    await ctx.mcpReq.log('info', 'Tool execution started', 'fixture');
    await sleep(50);
    await ctx.mcpReq.log('info', 'Tool processing data', 'fixture');
    await sleep(50);
    await ctx.mcpReq.log('info', 'Tool execution completed', 'fixture');
    return result('Tool with logging executed successfully');
  });
  tool('test_error_handling', 'Always fails', noArgs(), () => ({
    isError: true,
    content: [text('This tool intentionally returns an error for testing')],
  }));
  tool('test_tool_with_progress', 'Reports progress 0, 50, 100', noArgs(), async (_args, ctx) => {
    const token = ctx.mcpReq._meta?.progressToken;
    for (const [i, progress] of [0, 50, 100].entries()) {
      if (i > 0) await sleep(50);
      if (token !== undefined) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress, total: 100 } });
      }
    }
    return result(`Progress tool finished (token ${JSON.stringify(token ?? null)})`);
  });
  tool('test_sampling', 'Asks the client to sample (multi-round-trip)', stringArgs('prompt'), ({ prompt }, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, 'sample');
    if (view.kind !== 'sampling') {
      return inputRequired({
        inputRequests: {
          sample: inputRequired.createMessage({ messages: [{ role: 'user', content: text(prompt) }], maxTokens: 100 }),
        },
      });
    }
    return result(`LLM response: ${samplingText(view)}`);
  });
  tool('test_elicitation', 'Asks the client for input (multi-round-trip)', stringArgs('message'), ({ message }, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, 'user_input');
    if (view.kind !== 'elicit') {
      return inputRequired({
        inputRequests: {
          user_input: inputRequired.elicit({
            message,
            requestedSchema: {
              type: 'object',
              properties: {
                username: { type: 'string', description: "User's response" },
                email: { type: 'string', description: "User's email address" },
              },
              required: ['username', 'email'],
            },
          }),
        },
      });
    }
    return result(`User response: action=${view.action}, content=${JSON.stringify(view.content ?? {})}`);
  });
  tool('json_schema_2020_12_tool', 'Tool with JSON Schema 2020-12 features', schema(JSON_SCHEMA_2020_12), (args) =>
    result(`json_schema_2020_12_tool: ${JSON.stringify(args)}`),
  );
  tool('echo', 'Echoes its message', stringArgs('message'), ({ message }) => result(`Echo: ${message}`));

  // --- diagnostic tools of server-stateless (SEP-2575) ---------------------------------------
  // McpServer turns an error thrown by a tool into an `isError` result; an input request for an
  // undeclared capability is what the SDK's multi-round-trip seam answers with -32021 (HTTP 400).
  tool('test_missing_capability', 'Needs the client capability `sampling` (-32021 without it)', noArgs(), (_args, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, 'sample');
    if (view.kind === 'sampling') return result(`sampled: ${samplingText(view)}`);
    return inputRequired({
      inputRequests: {
        sample: inputRequired.createMessage({ messages: [{ role: 'user', content: text('Say something') }], maxTokens: 20 }),
      },
    });
  });
  tool('test_streaming_elicitation', 'Reports progress, then asks for input (multi-round-trip)', noArgs(), async (_args, ctx) => {
    const name = answered(ctx, 'user_name', 'name');
    if (name !== undefined) return result(`Hello, ${name}!`);
    await ctx.mcpReq.log('info', 'about to ask for input', 'fixture');
    return inputRequired({ inputRequests: { user_name: askString('What is your name?', 'name') } });
  });
  tool('test_logging_tool', 'Logs at debug, info, warning and error', noArgs(), async (_args, ctx) => {
    for (const level of ['debug', 'info', 'warning', 'error']) {
      await ctx.mcpReq.log(level, `a ${level} message`, 'fixture');
      await sleep(20);
    }
    return result('Logged at debug, info, warning and error');
  });
  tool('test_trigger_tool_change', 'Announces a tools/list change on listen streams', noArgs(), () => {
    handler.notify.toolsChanged();
    return result('tools list changed');
  });
  tool('test_trigger_prompt_change', 'Announces a prompts/list change on listen streams', noArgs(), () => {
    handler.notify.promptsChanged();
    return result('prompts list changed');
  });
  tool(
    'test_x_mcp_header',
    'Mirrors `region` into the Mcp-Param-Region header (SEP-2243)',
    schema({
      type: 'object',
      properties: { region: { type: 'string', description: 'A region', 'x-mcp-header': 'Region' } },
      required: ['region'],
    }),
    ({ region }) => result(`region: ${region}`),
  );

  // --- multi-round-trip tools (SEP-2322) ------------------------------------------------------
  tool('test_input_required_result_elicitation', 'Asks for user_name, then greets', noArgs(), (_args, ctx) => {
    const name = answered(ctx, 'user_name', 'name');
    if (name === undefined) return inputRequired({ inputRequests: { user_name: askString('What is your name?', 'name') } });
    return result(`Hello, ${name}!`);
  });
  tool('test_input_required_result_sampling', 'Asks capital_question by sampling', noArgs(), (_args, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, 'capital_question');
    if (view.kind !== 'sampling') {
      return inputRequired({
        inputRequests: {
          capital_question: inputRequired.createMessage({
            messages: [{ role: 'user', content: text('What is the capital of France?') }],
            maxTokens: 100,
          }),
        },
      });
    }
    return result(`Sampling answered: ${samplingText(view)}`);
  });
  tool('test_input_required_result_list_roots', 'Asks for client_roots', noArgs(), (_args, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, 'client_roots');
    if (view.kind !== 'roots') return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
    return result(`Client roots: ${view.roots.map((r) => r.uri).join(', ') || '(none)'}`);
  });
  tool('test_input_required_result_request_state', 'Asks to confirm, with sealed requestState', noArgs(), async (_args, ctx) => {
    const state = ctx.mcpReq.requestState();
    const view = inputResponse(ctx.mcpReq.inputResponses, 'confirm');
    if (state?.tool === 'request_state' && view.kind === 'elicit') {
      return result(`state-ok: confirmed=${JSON.stringify(view.content?.ok ?? null)} (action ${view.action})`);
    }
    return inputRequired({
      inputRequests: {
        confirm: inputRequired.elicit({
          message: 'Please confirm',
          requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
        }),
      },
      requestState: await codec.mint({ tool: 'request_state' }),
    });
  });
  tool('test_input_required_result_multiple_inputs', 'Asks user_name, greeting and client_roots at once', noArgs(), async (_args, ctx) => {
    const state = ctx.mcpReq.requestState();
    const name = answered(ctx, 'user_name', 'name');
    const greeting = inputResponse(ctx.mcpReq.inputResponses, 'greeting');
    const roots = inputResponse(ctx.mcpReq.inputResponses, 'client_roots');
    if (state?.tool === 'multiple_inputs' && name !== undefined && greeting.kind === 'sampling' && roots.kind === 'roots') {
      return result(`name=${name}; greeting=${samplingText(greeting)}; roots=${roots.roots.length}`);
    }
    return inputRequired({
      inputRequests: {
        user_name: askString('What is your name?', 'name'),
        greeting: inputRequired.createMessage({ messages: [{ role: 'user', content: text('Generate a greeting') }], maxTokens: 50 }),
        client_roots: inputRequired.listRoots(),
      },
      requestState: await codec.mint({ tool: 'multiple_inputs' }),
    });
  });
  tool('test_input_required_result_multi_round', 'Asks step1 (name), then step2 (colour)', noArgs(), async (_args, ctx) => {
    const state = ctx.mcpReq.requestState();
    if (state?.tool === 'multi_round' && state.round === 2) {
      const color = answered(ctx, 'step2', 'color');
      if (color !== undefined) return result(`${state.name}'s favourite colour is ${color}`);
    }
    const name = state?.tool === 'multi_round' ? (answered(ctx, 'step1', 'name') ?? state.name) : undefined;
    if (name !== undefined) {
      return inputRequired({
        inputRequests: { step2: askString('Step 2: What is your favorite color?', 'color') },
        requestState: await codec.mint({ tool: 'multi_round', round: 2, name }),
      });
    }
    return inputRequired({
      inputRequests: { step1: askString('Step 1: What is your name?', 'name') },
      requestState: await codec.mint({ tool: 'multi_round', round: 1 }),
    });
  });
  tool('test_input_required_result_tampered_state', 'Sealed requestState; a tampered one is refused', noArgs(), async (_args, ctx) => {
    const state = ctx.mcpReq.requestState();
    const view = inputResponse(ctx.mcpReq.inputResponses, 'confirm');
    if (state?.tool === 'tampered_state' && view.kind === 'elicit') return result('state-ok: the requestState verified');
    return inputRequired({
      inputRequests: {
        confirm: inputRequired.elicit({
          message: 'Please confirm',
          requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
        }),
      },
      requestState: await codec.mint({ tool: 'tampered_state' }),
    });
  });
  tool('test_input_required_result_capabilities', 'Asks only for what the client declared', noArgs(), (_args, ctx) => {
    const caps = clientCapabilities(ctx, mcp);
    const done = Object.keys(ctx.mcpReq.inputResponses ?? {}).length > 0;
    const requests = {};
    if (caps.elicitation) requests.user_name = askString('What is your name?', 'name');
    if (caps.sampling) {
      requests.greeting = inputRequired.createMessage({ messages: [{ role: 'user', content: text('Generate a greeting') }], maxTokens: 50 });
    }
    if (caps.roots) requests.client_roots = inputRequired.listRoots();
    if (done || Object.keys(requests).length === 0) return result(`capabilities: ${Object.keys(caps).sort().join(', ') || '(none)'}`);
    return inputRequired({ inputRequests: requests });
  });

  // --- resources ----------------------------------------------------------------------------
  mcp.registerResource(
    'static-text',
    'test://static-text',
    { description: 'A static text resource', mimeType: 'text/plain' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] }),
  );
  mcp.registerResource(
    'static-binary',
    'test://static-binary',
    { description: 'A static PNG', mimeType: 'image/png' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG }] }),
  );
  mcp.registerResource(
    'watched-resource',
    'test://watched-resource',
    { description: 'A resource to subscribe to', mimeType: 'text/plain' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content.' }] }),
  );
  mcp.registerResource(
    'template-data',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'Data by id', mimeType: 'application/json' },
    (uri, { id }) => ({
      contents: [
        { uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) },
      ],
    }),
  );

  // --- prompts ------------------------------------------------------------------------------
  mcp.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments' }, () => ({
    messages: [{ role: 'user', content: text('This is a simple prompt for testing.') }],
  }));
  mcp.registerPrompt(
    'test_prompt_with_arguments',
    {
      description: 'A prompt with two arguments',
      argsSchema: schema({
        type: 'object',
        properties: { arg1: { type: 'string', description: 'First argument' }, arg2: { type: 'string', description: 'Second argument' } },
        required: ['arg1', 'arg2'],
      }),
    },
    ({ arg1, arg2 }) => ({ messages: [{ role: 'user', content: text(`Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`) }] }),
  );
  mcp.registerPrompt(
    'test_prompt_with_embedded_resource',
    {
      description: 'A prompt embedding a resource',
      argsSchema: schema({
        type: 'object',
        properties: { resourceUri: { type: 'string', description: 'URI of the resource to embed' } },
        required: ['resourceUri'],
      }),
    },
    ({ resourceUri }) => ({
      messages: [
        {
          role: 'user',
          content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } },
        },
        { role: 'user', content: text('Please process the embedded resource above.') },
      ],
    }),
  );
  mcp.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' }, () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
      { role: 'user', content: text('Please analyze the image above.') },
    ],
  }));
  mcp.registerPrompt('test_input_required_result_prompt', { description: 'Asks for user_context first (multi-round-trip)' }, (ctx) => {
    const context = answered(ctx, 'user_context', 'context');
    if (context === undefined) {
      return inputRequired({ inputRequests: { user_context: askString('What context should the prompt use?', 'context') } });
    }
    return { messages: [{ role: 'user', content: text(`Use this context: ${context}`) }] };
  });

  // --- completion ---------------------------------------------------------------------------
  mcp.server.setRequestHandler('completion/complete', (req) => {
    const value = String(req.params.argument?.value ?? '');
    const values = ['paris', 'park', 'party', 'test', 'testValue1'].filter((v) => v.startsWith(value));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  return mcp;
}

handler = createMcpHandler(() => makeServer(), {
  onerror: (e) => {
    if (process.env.FIXTURE_DEBUG) console.error('fixture_modern:', e);
  },
});
const serve = toNodeHandler(handler);
const validHost = localhostHostValidation();
const validOrigin = localhostOriginValidation();

const server = http.createServer(async (req, res) => {
  try {
    if (!validHost(req, res) || !validOrigin(req, res)) return;
    if (new URL(req.url, 'http://x').pathname !== '/mcp') {
      res.writeHead(404).end('not found');
      return;
    }
    await serve(req, res);
  } catch (e) {
    console.error('fixture_modern: request failed:', e);
    if (!res.headersSent) res.writeHead(500).end(String(e));
  }
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}/mcp`);
});
const stop = () => {
  handler.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
