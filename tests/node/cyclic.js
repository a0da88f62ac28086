// @cyclic.sh/session-store, made usable outside Cyclic's cloud without
// changing the items it writes:
// * its DynamoDB client is a module-level singleton that takes no endpoint,
//   so the store gets a client built from the same modules (the
//   @aws-sdk/client-dynamodb 3.348 it pins, its @aws-sdk/lib-dynamodb, its
//   marshalling options) pointed at the given endpoint;
// * its `set` and `touch` hand the SDK's response to express-session's
//   callback as if it were an error (`.then(callback)`), and leave a failed
//   write unhandled: the callbacks are wrapped so that only an Error is one.
'use strict';

const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, PutCommand, UpdateCommand } = require('@aws-sdk/lib-dynamodb');
const { CyclicSessionStore } = require('@cyclic.sh/session-store');

// Exactly what its ddb_client.js uses.
const translateConfig = {
  marshallOptions: { convertEmptyValues: true, removeUndefinedValues: true, convertClassInstanceToMap: true },
  unmarshallOptions: { wrapNumbers: false },
};

module.exports = function cyclicStore(_session, table, clientOptions) {
  const store = new CyclicSessionStore({ table: { name: table } });
  const client = DynamoDBDocumentClient.from(new DynamoDBClient(clientOptions), translateConfig);
  // Writes resolve to the failure instead of rejecting, so the wrapped
  // callbacks below see it (their `.then(callback)` has no catch).
  store.documentClient = {
    send(command) {
      const sent = client.send(command);
      return command instanceof PutCommand || command instanceof UpdateCommand
        ? sent.catch((error) => (error instanceof Error ? error : new Error(String(error))))
        : sent;
    },
  };
  for (const method of ['set', 'touch']) {
    const original = store[method].bind(store);
    store[method] = (sid, sess, callback = () => {}) =>
      original(sid, sess, (result) => callback(result instanceof Error ? result : null));
  }
  return store;
};
