// Benchmark peer: what people build with express-session instead of sessiongate.
// express-session + connect-redis + http-proxy-middleware (keep-alive agent),
// speaking sessiongate's header protocol: the session goes upstream as
// X-Session-Id / X-Session-Data, the backend changes it with X-Session-Update
// (an RFC 7396 merge patch). Benchmark use only; run by bench/run.sh.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const express = require('express');
const session = require('express-session');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');
const { createProxyMiddleware } = require('http-proxy-middleware');

const port = Number(process.env.PORT || 0);
const upstream = process.env.UPSTREAM_URL;
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const prefix = process.env.STORE_PREFIX || 'bench:express:';
const secret = process.env.SESSION_SECRET;
if (!upstream || !secret) {
  console.error('express peer: UPSTREAM_URL and SESSION_SECRET are required');
  process.exit(2);
}

const SESSION_HEADERS = ['x-session-id', 'x-session-data', 'x-session-update',
  'x-session-regenerate', 'x-session-destroy'];

// RFC 7396 JSON Merge Patch applied in place.
function mergePatch(target, patch) {
  for (const [key, value] of Object.entries(patch)) {
    if (key === 'cookie' || key === '__proto__') continue;
    if (value === null) {
      delete target[key];
    } else if (typeof value === 'object' && !Array.isArray(value)) {
      const current = target[key];
      const base = current && typeof current === 'object' && !Array.isArray(current) ? current : {};
      target[key] = mergePatch(base, value);
    } else {
      target[key] = value;
    }
  }
  return target;
}

function sessionData(sess) {
  const data = {};
  for (const key of Object.keys(sess)) {
    if (key !== 'cookie') data[key] = sess[key];
  }
  // ASCII only, like the gateway.
  return JSON.stringify(data).replace(/[\u0080-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

async function main() {
  const client = createClient({ url: redisUrl });
  client.on('error', (err) => console.error('express peer: redis:', err.message));
  await client.connect();

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  app.use(session({
    name: 'sid',
    secret,
    store: new RedisStore({ client, prefix, ttl: 24 * 3600 }),
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax', maxAge: 24 * 3600 * 1000 },
  }));

  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

  app.use(createProxyMiddleware({
    target: upstream,
    agent,
    xfwd: true,
    on: {
      proxyReq(proxyReq, req) {
        for (const name of SESSION_HEADERS) proxyReq.removeHeader(name);
        for (const name of Object.keys(req.headers)) {
          if (SESSION_HEADERS.includes(name.replace(/_/g, '-'))) proxyReq.removeHeader(name);
        }
        const id = crypto.createHash('sha256').update(req.sessionID).digest('base64url').slice(0, 22);
        proxyReq.setHeader('X-Session-Id', id);
        proxyReq.setHeader('X-Session-Data', sessionData(req.session));
      },
      proxyRes(proxyRes, req) {
        // Runs before http-proxy copies the headers to the client response,
        // so express-session still sees the change when it sets the cookie
        // (writeHead) and saves the session (end).
        const update = proxyRes.headers['x-session-update'];
        delete proxyRes.headers['x-session-update'];
        if (update !== undefined) {
          try {
            const patch = JSON.parse(update);
            if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw new Error('not an object');
            mergePatch(req.session, patch);
          } catch (err) {
            proxyRes.statusCode = 502;
            console.error('express peer: bad X-Session-Update:', err.message);
          }
        }
      },
      error(err, req, res) {
        if (res && !res.headersSent && typeof res.writeHead === 'function') {
          res.writeHead(502, { 'content-type': 'text/plain' });
        }
        if (res && typeof res.end === 'function') res.end('Bad Gateway\n');
      },
    },
  }));

  const server = app.listen(port, '127.0.0.1', () => {
    console.error(`express peer: listening on 127.0.0.1:${server.address().port} -> ${upstream}`);
  });
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 121000;
  const stop = () => server.close(() => client.quit().finally(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error('express peer:', err);
  process.exit(1);
});
