#!/usr/bin/env node
// Run @modelcontextprotocol/server-everything bound to 127.0.0.1 only.
//
//   PORT=3901 node tests/clients/everything_server.mjs sse|streamableHttp|stdio
//
// The package's own entry point (dist/index.js <mode>, port from $PORT, default
// 3001) calls app.listen(PORT) without a host, i.e. it binds every interface.
// This wrapper makes a host-less listen() bind loopback (override with
// EVERYTHING_HOST), then hands over to the real entry point unchanged.
import net from 'node:net';

const host = process.env.EVERYTHING_HOST || '127.0.0.1';
const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(...args) {
  if ((typeof args[0] === 'number' || typeof args[0] === 'string') && /^\d+$/.test(String(args[0]))
      && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, host);
  }
  return origListen.apply(this, args);
};

await import('@modelcontextprotocol/server-everything/dist/index.js');
