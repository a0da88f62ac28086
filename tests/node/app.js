// The Node side of tests/it/node_compat.rs: an Express app that keeps its
// sessions with the real express-session and one of its stores, or with
// iron-session, configured from the environment, so that the gateway's
// tests can check both directions against the real packages.
//
//   PORT            where to listen (127.0.0.1)
//   SESSION_SECRET  express-session's secret / iron-session's password
//   STORE           redis | mysql | dynamodb | cyclic | iron
//   REDIS_URL, PREFIX                      (redis)
//   MYSQL_URL, TABLE                       (mysql)
//   DYNAMODB_ENDPOINT, TABLE, PREFIX       (dynamodb, cyclic)
//   COOKIE_NAME     connect.sid by default (sid for iron)
//   TTL_MS          the session lifetime, 86400000 by default
//
// Routes (GET, JSON answers):
//   /login?user=NAME   sets session.user
//   /set?json=OBJECT   merges OBJECT into the session
//   /whoami            the session as the library sees it
//   /logout            destroys the session
'use strict';

const express = require('express');

const env = process.env;
const port = Number(env.PORT || 3000);
const secret = env.SESSION_SECRET;
const kind = env.STORE || 'redis';
const ttl = Number(env.TTL_MS || 86400000);

function fail(error) {
  console.error(`node app: ${error && error.stack ? error.stack : error}`);
  process.exit(1);
}

function merge(target, patch) {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete target[key];
    else target[key] = value;
  }
}

function plain(session) {
  return JSON.parse(JSON.stringify(session));
}

async function expressApp() {
  const session = require('express-session');
  const store = await makeStore(session);
  const app = express();
  app.use(
    session({
      secret: secret.split(','),
      store,
      name: env.COOKIE_NAME || 'connect.sid',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: ttl },
    })
  );
  app.get('/login', (req, res) => {
    req.session.user = req.query.user;
    req.session.save((error) => (error ? res.status(500).json({ error: String(error) }) : res.json({ session: plain(req.session) })));
  });
  app.get('/set', (req, res) => {
    merge(req.session, JSON.parse(req.query.json));
    req.session.save((error) => (error ? res.status(500).json({ error: String(error) }) : res.json({ session: plain(req.session) })));
  });
  app.get('/whoami', (req, res) => res.json({ id: req.sessionID, session: plain(req.session) }));
  app.get('/logout', (req, res) => req.session.destroy(() => res.json({ ok: true })));
  return app;
}

async function makeStore(session) {
  switch (kind) {
    case 'redis': {
      const { createClient } = require('redis');
      const RedisStore = require('connect-redis').default;
      const client = createClient({ url: env.REDIS_URL });
      client.on('error', (error) => console.error(`node app: redis: ${error}`));
      await client.connect();
      return new RedisStore({ client, prefix: env.PREFIX });
    }
    case 'mysql': {
      const MySQLStore = require('express-mysql-session')(session);
      const url = new URL(env.MYSQL_URL);
      return new MySQLStore({
        host: url.hostname,
        port: Number(url.port || 3306),
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        database: url.pathname.slice(1),
        createDatabaseTable: true,
        clearExpired: false,
        schema: { tableName: env.TABLE },
      });
    }
    case 'dynamodb': {
      const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
      const DynamoDBStore = require('connect-dynamodb')(session);
      return new DynamoDBStore({
        table: env.TABLE,
        prefix: env.PREFIX,
        client: new DynamoDBClient(dynamoOptions()),
      });
    }
    case 'cyclic':
      return require('./cyclic')(session, env.TABLE, dynamoOptions());
    default:
      throw new Error(`unknown STORE ${kind}`);
  }
}

function dynamoOptions() {
  return {
    endpoint: env.DYNAMODB_ENDPOINT,
    region: 'eu-central-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  };
}

async function ironApp() {
  const { getIronSession } = require('iron-session');
  const options = {
    password: secret,
    cookieName: env.COOKIE_NAME || 'sid',
    ttl: Math.floor(ttl / 1000),
    cookieOptions: { secure: false },
  };
  const app = express();
  const open = (req, res) => getIronSession(req, res, options);
  app.get('/login', async (req, res) => {
    const session = await open(req, res);
    session.user = req.query.user;
    await session.save();
    res.json({ session: plain(session) });
  });
  app.get('/set', async (req, res) => {
    const session = await open(req, res);
    merge(session, JSON.parse(req.query.json));
    await session.save();
    res.json({ session: plain(session) });
  });
  app.get('/whoami', async (req, res) => res.json({ session: plain(await open(req, res)) }));
  app.get('/logout', async (req, res) => {
    (await open(req, res)).destroy();
    res.json({ ok: true });
  });
  return app;
}

(kind === 'iron' ? ironApp() : expressApp())
  .then((app) => {
    app.use((error, _req, res, _next) => res.status(500).json({ error: String(error) }));
    app.listen(port, '127.0.0.1', () => console.log(`node app (${kind}) listening on ${port}`));
  })
  .catch(fail);
