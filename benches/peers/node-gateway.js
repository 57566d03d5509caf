'use strict';
// The e2e bench's Node peer: a gateway on @clerk/backend `verifyToken` (networkless, with the
// same PEM key clerkgate gets) and `http-proxy` with a keep-alive agent. "/" is public, every
// other path needs a valid token; a verified request is forwarded with the forwarded trio
// (http-proxy's xfwd) and the identity headers clerkgate sets, after stripping client copies.
// Run by benches/e2e when ./node_modules exists (`npm ci` in this folder installs it).
// Env: PORT, UPSTREAM (http://host:port), JWT_KEY_FILE, AUTHORIZED_PARTY.

const fs = require('node:fs');
const http = require('node:http');
const httpProxy = require('http-proxy');
const { verifyToken } = require('@clerk/backend');

const jwtKey = fs.readFileSync(process.env.JWT_KEY_FILE, 'utf8');
const authorizedParties = [process.env.AUTHORIZED_PARTY];
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const proxy = httpProxy.createProxyServer({ target: process.env.UPSTREAM, agent, xfwd: true });
proxy.on('error', (_err, _req, res) => {
  if (!res.headersSent) res.writeHead(502);
  res.end();
});

const RESERVED = [
  'x-clerk-auth-status', 'x-clerk-user-id', 'x-clerk-session-id', 'x-clerk-org-id',
  'x-clerk-org-slug', 'x-clerk-org-role', 'x-clerk-org-permissions', 'x-clerk-actor',
];

async function handle(req, res) {
  for (const h of RESERVED) delete req.headers[h];
  if (req.url === '/') {
    req.headers['x-clerk-auth-status'] = 'signed-out';
    return proxy.web(req, res);
  }
  const auth = req.headers.authorization || '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  let claims;
  try {
    claims = await verifyToken(token, { jwtKey, authorizedParties });
  } catch {
    res.writeHead(401, { 'x-clerk-auth-status': 'signed-out' });
    return res.end();
  }
  req.headers['x-clerk-auth-status'] = 'signed-in';
  req.headers['x-clerk-user-id'] = claims.sub;
  if (claims.sid) req.headers['x-clerk-session-id'] = claims.sid;
  return proxy.web(req, res);
}

http
  .createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  })
  .listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
