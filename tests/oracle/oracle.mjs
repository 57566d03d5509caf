// Clerk's own SDK as the judge: runs @clerk/backend's authenticateRequest over a table of
// requests and prints, per row, what a Clerk-protected route would answer.
//
//   node oracle.mjs TABLE.json > ANSWERS.json
//
// The table (written by tests/it/oracle.rs):
//   { "now_ms": <ms since the epoch, the instant both sides pretend it is>,
//     "jwt_key": "<PEM>",
//     "instances": { "<name>": { "publishable_key", "secret_key", "api_url",
//                                "proxy_url"?, "sign_in_url"?, "authorized_parties"? } },
//     "rows": [ { "id", "instance", "method", "url", "headers": [[name, value], ...] } ] }
//
// Every row runs fully offline: keys come from `jwtKey` (networkless), and the only calls the
// SDK may make are to the instance's `api_url`, a stand-in Backend API on loopback (handshake
// nonces, refresh). Any other fetch fails the row and the whole run (exit 3), loudly.
//
// Time is pinned: Date.now() answers `now_ms` for the whole run, and the gateway under test
// runs on a manual clock at the same instant, so expiry decisions and the dates inside Clerk's
// messages are the same on both sides.
//
// Output: one JSON object { "sdk": "@clerk/backend@<version>", "rows": [...] }, each row:
//   { id, state: "signed-in"|"signed-out"|"handshake"|"error", reason, message, error,
//     headers: [[name, value], ...] (Clerk's state headers, Set-Cookie one per entry),
//     identity: { userId, sessionId, orgId, orgSlug, orgRole, orgPermissions, actor,
//                 sessionStatus } | null,
//     answer: { kind: "forward"|"refuse"|"handshake"|"redirect"|"sign-in"|"error",
//               status, location },
//     calls: ["GET /v1/clients/handshake_payload?nonce=…", ...], logs: [...] }
//
// `answer` is what Clerk's middleware makes of the state on a protected route: a Location in
// the state's headers is a 307 (a handshake, or the development handshake's clean URL);
// signed-in (and not pending) reaches the app; anything else is refused, or — for a page load
// (a GET document request, SPEC §8) — redirected to sign in by Clerk's own createRedirect, the
// way `auth.protect()` does: to the instance's sign-in URL, else the Account Portal derived
// from the publishable key, pending sessions to `<sign-in>/tasks`.

import { readFileSync } from 'node:fs';

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'));

// --- No network but loopback, and the SDK must not even try. -------------------------------
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const refused = [];
let current = null;
const realFetch = globalThis.fetch;
globalThis.fetch = async (resource, init) => {
  const href = typeof resource === 'string' ? resource : (resource?.url ?? String(resource));
  const url = new URL(href);
  const method = init?.method ?? resource?.method ?? 'GET';
  if (!LOOPBACK.has(url.hostname)) {
    refused.push({ row: current?.id ?? null, url: url.href });
    throw new Error(`oracle: the SDK tried to reach ${url.href}; only loopback is allowed`);
  }
  current?.calls.push(`${method} ${url.pathname}${url.search}`);
  return realFetch(resource, init);
};

// --- Pinned time. ----------------------------------------------------------------------------
const NOW_MS = Number(input.now_ms);
if (!Number.isFinite(NOW_MS)) {
  console.error('oracle: the table has no numeric now_ms');
  process.exit(2);
}
Date.now = () => NOW_MS;

// --- Clerk's logs go into the row, never to stdout (stdout is the answer). -----------------
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = (...args) => {
    const text = args.map(a => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
    if (current) current.logs.push(`${level}: ${text}`);
    else process.stderr.write(`${level}: ${text}\n`);
  };
}

// Imported only now: the SDK binds `fetch` when its module loads.
const { createClerkClient } = await import('@clerk/backend');
const { createClerkRequest, createRedirect } = await import('@clerk/backend/internal');
const sdkVersion = JSON.parse(
  readFileSync(new URL('./node_modules/@clerk/backend/package.json', import.meta.url), 'utf8'),
).version;

const clients = new Map();
function clientFor(name) {
  const inst = input.instances[name];
  if (!inst) throw new Error(`oracle: row names an unknown instance ${name}`);
  if (!clients.has(name)) {
    clients.set(
      name,
      createClerkClient({
        secretKey: inst.secret_key,
        publishableKey: inst.publishable_key,
        jwtKey: input.jwt_key,
        apiUrl: inst.api_url,
        ...(inst.proxy_url ? { proxyUrl: inst.proxy_url } : {}),
      }),
    );
  }
  return clients.get(name);
}

// Clerk's handshake eligibility (clerk-semantics §1.7), also what a page load is for the
// sign-in redirect (SPEC §8).
function isPageLoad(req) {
  if (req.method !== 'GET') return false;
  const dest = req.headers.get('sec-fetch-dest');
  if (dest) return dest === 'document' || dest === 'iframe';
  return (req.headers.get('accept') ?? '').startsWith('text/html');
}

function headerList(headers) {
  const out = [];
  for (const [name, value] of headers.entries()) {
    if (name.toLowerCase() !== 'set-cookie') out.push([name.toLowerCase(), value]);
  }
  for (const cookie of headers.getSetCookie()) out.push(['set-cookie', cookie]);
  return out;
}

function identityOf(state) {
  if (state.status !== 'signed-in') return null;
  const auth = state.toAuth({ treatPendingAsSignedOut: false });
  return {
    userId: auth.userId ?? null,
    sessionId: auth.sessionId ?? null,
    orgId: auth.orgId ?? null,
    orgSlug: auth.orgSlug ?? null,
    orgRole: auth.orgRole ?? null,
    orgPermissions: auth.orgPermissions?.length ? auth.orgPermissions.join(',') : null,
    actor: auth.actor?.sub ?? null,
    sessionStatus: auth.sessionStatus ?? null,
  };
}

function answerOf(state, identity, req, inst) {
  const location = state.headers.get('location');
  if (location) {
    return { kind: state.status === 'handshake' ? 'handshake' : 'redirect', status: 307, location };
  }
  if (state.status === 'signed-in' && identity?.sessionStatus !== 'pending') {
    return { kind: 'forward', status: 200, location: null };
  }
  if (isPageLoad(req)) {
    // auth.protect(): the configured sign-in URL, else the Account Portal derived from the
    // publishable key; in development the dev browser token goes along on a cross-origin hop.
    const clerkReq = createClerkRequest(req);
    const { redirectToSignIn } = createRedirect({
      publishableKey: inst.publishable_key,
      baseUrl: clerkReq.clerkUrl,
      signInUrl: inst.sign_in_url ?? undefined,
      sessionStatus: identity?.sessionStatus ?? null,
      devBrowserToken:
        clerkReq.clerkUrl.searchParams.get('__clerk_db_jwt') || clerkReq.cookies.get('__clerk_db_jwt') || null,
      redirectAdapter: url => url,
    });
    return { kind: 'sign-in', status: 307, location: redirectToSignIn({ returnBackUrl: clerkReq.clerkUrl.href }) };
  }
  return { kind: 'refuse', status: 401, location: null };
}

const rows = [];
for (const row of input.rows) {
  current = { id: row.id, calls: [], logs: [] };
  const inst = input.instances[row.instance] ?? {};
  const out = { id: row.id, state: null, reason: null, message: null, error: null, headers: [], identity: null };
  try {
    const req = new Request(row.url, { method: row.method, headers: row.headers });
    const state = await clientFor(row.instance).authenticateRequest(req, {
      ...(inst.authorized_parties ? { authorizedParties: inst.authorized_parties } : {}),
    });
    out.state = state.status;
    out.reason = state.reason ?? null;
    out.message = state.message ?? null;
    out.headers = headerList(state.headers);
    out.identity = identityOf(state);
    out.answer = answerOf(state, out.identity, req, inst);
  } catch (err) {
    // Clerk's middleware lets this escape: the framework answers 500.
    out.state = 'error';
    out.error = err instanceof Error ? err.message : String(err);
    out.answer = { kind: 'error', status: 500, location: null };
  }
  out.calls = current.calls;
  out.logs = current.logs;
  rows.push(out);
  current = null;
}

process.stdout.write(JSON.stringify({ sdk: `@clerk/backend@${sdkVersion}`, rows }, null, 1) + '\n');
if (refused.length) {
  for (const r of refused) process.stderr.write(`oracle: row ${r.row}: the SDK tried to reach ${r.url}\n`);
  process.exit(3);
}
