// A small identity provider for tests/identity*.rs, built on the `jose` library: it makes its
// own signing keys (RS256 and ES256), serves their public JWKS at GET /jwks (counting fetches),
// and signs the claims a test posts. Nothing here checks tokens: the bridge does.
//
//   GET  /jwks                          the public keys: {"keys": [...]}
//   GET  /fetches                       how many times /jwks was fetched: {"fetches": N}
//   POST /sign {claims, kid?, alg?, hmacWithPublicKey?}   {"token": "..."}
//   POST /rotate {alg?}                 a new key replaces every key of that algorithm: {"kid"}
//   POST /stray {alg?}                  a key that is never published: {"kid"}
//
// PORT sets the port. The process exits on SIGTERM.
import http from 'node:http';
import { SignJWT, generateKeyPair, exportJWK } from 'jose';

const keys = new Map(); // kid -> {alg, privateKey, publicJwk, published}
let fetches = 0;
let counter = 0;

async function makeKey(alg, published) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${++counter}`;
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  keys.set(kid, { alg, privateKey, publicJwk, published });
  return kid;
}

await makeKey('RS256', true);
await makeKey('ES256', true);

function jwks() {
  return { keys: [...keys.values()].filter((k) => k.published).map((k) => k.publicJwk) };
}

async function sign(req) {
  const alg = req.alg ?? 'RS256';
  const kid = req.kid ?? [...keys.entries()].find(([, k]) => k.published && k.alg === alg)?.[0];
  const key = keys.get(kid);
  if (!key) throw new Error(`no key ${kid}`);
  if (req.hmacWithPublicKey) {
    // The classic confusion: HS256 with the public key's bytes as the secret.
    const secret = new TextEncoder().encode(JSON.stringify(key.publicJwk));
    return new SignJWT(req.claims).setProtectedHeader({ alg: 'HS256', kid }).sign(secret);
  }
  return new SignJWT(req.claims).setProtectedHeader({ alg: key.alg, kid, typ: 'JWT' }).sign(key.privateKey);
}

async function body(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  return data ? JSON.parse(data) : {};
}

const server = http.createServer(async (req, res) => {
  const reply = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  try {
    if (req.method === 'GET' && req.url === '/jwks') {
      fetches += 1;
      return reply(200, jwks());
    }
    if (req.method === 'GET' && req.url === '/fetches') return reply(200, { fetches });
    if (req.method === 'POST' && req.url === '/sign') return reply(200, { token: await sign(await body(req)) });
    if (req.method === 'POST' && req.url === '/rotate') {
      const alg = (await body(req)).alg ?? 'RS256';
      for (const k of keys.values()) if (k.alg === alg) k.published = false;
      return reply(200, { kid: await makeKey(alg, true) });
    }
    if (req.method === 'POST' && req.url === '/stray') {
      return reply(200, { kid: await makeKey((await body(req)).alg ?? 'RS256', false) });
    }
    reply(404, { error: 'no such endpoint' });
  } catch (e) {
    reply(500, { error: String(e) });
  }
});

server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log(`jwt issuer on ${process.env.PORT}`));
process.on('SIGTERM', () => process.exit(0));
