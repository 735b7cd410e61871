// A remote MCP server behind OAuth 2.0 for tests/identity_credentials.rs. One process runs two
// real servers:
//   - `oauth2-mock-server` on OAUTH_PORT (its /token endpoint issues client-credentials tokens
//     signed with a key it made; /jwks publishes it);
//   - on PORT, a minimal MCP server, Streamable HTTP (JSON answers) at /mcp and legacy HTTP+SSE
//     at /sse, that verifies every request's
//     bearer token with `jose` against that /jwks (issuer, audience), refuses revoked ones with
//     401, and answers the tool `whoami` with what it saw.
// Test endpoints on PORT: GET /stats, POST /revoke (every token seen so far is refused from now
// on), POST /lifetime?secs=N (tokens issued from now on live N seconds).
import http from 'node:http';
import { OAuth2Server } from 'oauth2-mock-server';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const oauthPort = Number(process.env.OAUTH_PORT);
const expectedSecret = process.env.EXPECTED_SECRET;
const oauth = new OAuth2Server();
await oauth.issuer.keys.generate('RS256');
await oauth.start(oauthPort, '127.0.0.1');
const issuer = oauth.issuer.url;

const stats = { tokenRequests: 0, badSecrets: 0, unauthorized: 0, revoked: 0, tokens: [], tenants: [], forms: [] };
const revoked = new Set();
let lifetime = 3600;

oauth.service.on('beforeTokenSigning', (token, req) => {
  stats.tokenRequests += 1;
  const basic = (req.headers.authorization ?? '').replace(/^Basic /, '');
  const [id, secret] = Buffer.from(basic, 'base64').toString().split(':').map(decodeURIComponent);
  if (secret !== expectedSecret) stats.badSecrets += 1;
  stats.forms.push({ grant_type: req.body.grant_type, scope: req.body.scope, audience: req.body.audience, client_id: id });
  token.payload.aud = req.body.audience;
  token.payload.sub = id;
  token.payload.exp = Math.floor(Date.now() / 1000) + lifetime;
  token.payload.jti = `${Date.now()}-${stats.tokenRequests}`;
});
oauth.service.on('beforeResponse', (response) => {
  if (response.body && response.statusCode === 200) response.body.expires_in = lifetime;
});

const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));

async function authorized(req) {
  const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  if (!token || revoked.has(token)) {
    if (revoked.has(token)) stats.revoked += 1;
    return null;
  }
  try {
    const { payload } = await jwtVerify(token, jwks, { issuer, audience: 'protected-mcp' });
    if (!stats.tokens.includes(token)) stats.tokens.push(token);
    return payload;
  } catch {
    return null;
  }
}

async function body(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  return data;
}

const server = http.createServer(async (req, res) => {
  const json = (status, value, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(value));
  };
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/stats') return json(200, { ...stats, tokens: stats.tokens.length });
  if (url.pathname === '/revoke') {
    for (const t of stats.tokens) revoked.add(t);
    return json(200, { revoked: revoked.size });
  }
  if (url.pathname === '/lifetime') {
    lifetime = Number(url.searchParams.get('secs'));
    return json(200, { lifetime });
  }
  const claims = await authorized(req);
  if (!claims) {
    stats.unauthorized += 1;
    res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' });
    return res.end();
  }
  const tenant = req.headers['x-tenant'];
  if (tenant && !stats.tenants.includes(tenant)) stats.tenants.push(tenant);
  if (req.method === 'GET' && url.pathname === '/sse') {
    // The legacy transport: an endpoint event, then answers on this stream.
    const sid = String(++streams.count);
    streams.open.set(sid, res);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(`event: endpoint\ndata: /message?sid=${sid}\n\n`);
    req.on('close', () => streams.open.delete(sid));
    return;
  }
  if (req.method === 'GET') {
    res.writeHead(405, { allow: 'POST, DELETE' });
    return res.end();
  }
  if (req.method === 'DELETE') return json(200, {});
  const msg = JSON.parse(await body(req));
  const reply = msg.id === undefined ? null : { jsonrpc: '2.0', id: msg.id, ...answerFor(msg, claims, tenant) };
  if (url.pathname === '/message') {
    const stream = streams.open.get(url.searchParams.get('sid'));
    if (!stream) return json(404, { error: 'no such stream' });
    res.writeHead(202);
    res.end();
    if (reply) stream.write(`event: message\ndata: ${JSON.stringify(reply)}\n\n`);
    return;
  }
  if (!reply) {
    res.writeHead(202);
    return res.end();
  }
  return json(200, reply, { 'mcp-session-id': 'protected-session-1' });
});

const streams = { count: 0, open: new Map() };

function answerFor(msg, claims, tenant) {
  switch (msg.method) {
    case 'initialize':
      return {
        result: {
          protocolVersion: msg.params.protocolVersion,
          capabilities: { tools: {} },
          serverInfo: { name: 'protected', version: '0' },
        },
      };
    case 'tools/list':
      return { result: { tools: [{ name: 'whoami', inputSchema: { type: 'object' } }] } };
    case 'tools/call': {
      const seen = { sub: claims.sub, scope: claims.scope, aud: claims.aud, tenant };
      return { result: { content: [{ type: 'text', text: JSON.stringify(seen) }] } };
    }
    default:
      return { error: { code: -32601, message: 'method not found' } };
  }
}

server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log(`protected MCP server on ${process.env.PORT}, issuer ${issuer}`));
process.on('SIGTERM', async () => {
  await oauth.stop();
  process.exit(0);
});
