#!/usr/bin/env node
// Tiny MCP server speaking protocol revision 2026-07-28 (stateless Streamable HTTP),
// built with the official v2 server SDK (@modelcontextprotocol/server, devDependency).
// Used to self-test tests/clients/modern_client.mjs without the bridge:
// @modelcontextprotocol/server-everything 2026.8.31 is built on the v1 SDK and only
// speaks the 2025 (initialize/session) protocol.
//
//   PORT=3903 node tests/clients/modern_server.mjs     # http://127.0.0.1:3903/mcp
//
// Env: PORT (default 3903), HOST (default 127.0.0.1), MODERN_ONLY=1 to reject 2025-era
// traffic (default: the SDK's stateless legacy fallback also answers `initialize`).
//
// Tool names mirror server-everything's so the same client steps work against the
// bridge: echo, get-sum, trigger-long-running-operation (progress),
// trigger-sampling-request / trigger-elicitation-request (answered with an
// InputRequiredResult, i.e. MRTR), plus notify-list-changed (publishes
// tools/prompts/resources list_changed to open subscriptions/listen streams).
import http from 'node:http';
import {
  McpServer,
  createMcpHandler,
  fromJsonSchema,
  inputRequired,
  acceptedContent,
  inputResponse,
} from '@modelcontextprotocol/server';

const PORT = Number.parseInt(process.env.PORT || '3903', 10);
const HOST = process.env.HOST || '127.0.0.1';

const obj = (properties, required = []) => fromJsonSchema({ type: 'object', properties, required });
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); reject(new Error('aborted')); }, { once: true });
});

let handler; // set below; tools use handler.notify

function factory() {
  const server = new McpServer({ name: 'mcp-bridge-modern-test-server', version: '0.0.0' });

  server.registerTool('echo', {
    description: 'Echoes back the input',
    inputSchema: obj({ message: { type: 'string' } }, ['message']),
  }, async ({ message }) => text(`Echo: ${message}`));

  server.registerTool('get-sum', {
    description: 'Returns a + b',
    inputSchema: obj({ a: { type: 'number' }, b: { type: 'number' } }, ['a', 'b']),
  }, async ({ a, b }) => text(`The sum of ${a} and ${b} is ${a + b}.`));

  server.registerTool('trigger-long-running-operation', {
    description: 'Long running operation with progress notifications',
    inputSchema: obj({ duration: { type: 'number' }, steps: { type: 'number' } }),
  }, async ({ duration = 10, steps = 5 }, ctx) => {
    const token = ctx.mcpReq._meta?.progressToken;
    for (let i = 1; i <= steps; i++) {
      try {
        await sleep((duration / steps) * 1000, ctx.mcpReq.signal);
      } catch {
        process.stderr.write(`[modern_server] long-running request ${ctx.mcpReq.id} cancelled at step ${i}\n`);
        throw new Error('cancelled');
      }
      if (token !== undefined) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps } });
      }
    }
    return text(`Long running operation completed. Duration: ${duration} seconds, Steps: ${steps}.`);
  });

  server.registerTool('trigger-sampling-request', {
    description: 'Asks the client for an LLM sample (MRTR)',
    inputSchema: obj({ prompt: { type: 'string' }, maxTokens: { type: 'number' } }, ['prompt']),
  }, async ({ prompt, maxTokens = 100 }, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, 'sample');
    if (view.kind !== 'sampling') {
      return inputRequired({
        inputRequests: {
          sample: inputRequired.createMessage({
            messages: [{ role: 'user', content: { type: 'text', text: `Resource trigger-sampling-request context: ${prompt}` } }],
            systemPrompt: 'You are a helpful test server.',
            maxTokens,
          }),
        },
        requestState: 'sampling-round-1',
      });
    }
    return text(`LLM sampling result: \n${JSON.stringify(view.result, null, 2)}`);
  });

  server.registerTool('trigger-elicitation-request', {
    description: 'Asks the client for user input (MRTR)',
    inputSchema: obj({}),
  }, async (_args, ctx) => {
    const content = acceptedContent(ctx.mcpReq.inputResponses, 'form');
    if (!content) {
      return inputRequired({
        inputRequests: {
          form: inputRequired.elicit({
            message: 'Please provide inputs for the following fields:',
            requestedSchema: { type: 'object', properties: { name: { type: 'string', title: 'String' } }, required: ['name'] },
          }),
        },
        requestState: 'elicitation-round-1',
      });
    }
    return text(`Elicitation result: ${JSON.stringify({ action: 'accept', content })}`);
  });

  server.registerTool('notify-list-changed', {
    description: 'Publishes tools/prompts/resources list_changed to open subscriptions',
    inputSchema: obj({}),
  }, async () => {
    handler.notify.toolsChanged();
    handler.notify.promptsChanged();
    handler.notify.resourcesChanged();
    return text('published');
  });

  server.registerResource('static-text', 'demo://resource/static/text/1', {
    description: 'A static text resource', mimeType: 'text/plain',
  }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Resource 1' }] }));

  server.registerPrompt('simple-prompt', { description: 'A prompt with no arguments' },
    async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt.' } }] }));

  return server;
}

handler = createMcpHandler(factory, {
  legacy: process.env.MODERN_ONLY === '1' ? 'reject' : 'stateless',
  onerror: (e) => process.stderr.write(`[modern_server] ${e?.message ?? e}\n`),
});

// Minimal node:http -> fetch adapter (avoids the @modelcontextprotocol/node dependency).
// A client that closes the connection aborts the Request's signal (spec cancellation).
const httpServer = http.createServer(async (req, res) => {
  const ac = new AbortController();
  res.on('close', () => { if (!res.writableFinished) ac.abort(); });
  try {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (Array.isArray(v)) v.forEach((x) => headers.append(k, x)); else if (v !== undefined) headers.set(k, v);
    }
    const request = new Request(`http://${req.headers.host || `${HOST}:${PORT}`}${req.url}`, {
      method: req.method, headers, body: ['GET', 'HEAD'].includes(req.method) ? undefined : body, signal: ac.signal,
    });
    const response = await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (!response.body) { res.end(); return; }
    const reader = response.body.getReader();
    ac.signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      res.write(value);
    }
    res.end();
  } catch (e) {
    if (!res.headersSent) { res.writeHead(500, { 'content-type': 'text/plain' }); }
    res.end(String(e?.message ?? e));
  }
});

httpServer.listen(PORT, HOST, () => {
  process.stderr.write(`[modern_server] listening on http://${HOST}:${PORT}/mcp\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { handler.close().finally(() => process.exit(0)); setTimeout(() => process.exit(0), 1000).unref(); });
}
