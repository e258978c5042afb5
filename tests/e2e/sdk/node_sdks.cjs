// Runs a Node SDK, unchanged but for its host, against the collector: node node_sdks.cjs <segment|rudder> <collector> <writeKey> <run id>
// Prints the message ids it sent as JSON, after the SDK has flushed (a delivery error exits non-zero).
const [sdk, collector, writeKey, run] = process.argv.slice(2);
const anonymousId = `${sdk}-node-anon-${run}`;
const userId = `${sdk}-node-user-${run}`;
const calls = [
  ['page', { anonymousId, name: 'Home', properties: { path: '/' } }],
  ['track', { anonymousId, event: 'Product Viewed', properties: { product_id: 'p-1' } }],
  ['identify', { anonymousId, userId, traits: { plan: 'pro' } }],
  ['track', { userId, anonymousId, event: 'Order Completed', properties: { revenue: 42.5, order_id: `o-${run}` } }],
];

async function segment() {
  const { Analytics } = require('@segment/analytics-node');
  const analytics = new Analytics({ writeKey, host: collector, maxRetries: 3 });
  const sent = [];
  const failures = [];
  for (const [method, call] of calls) {
    analytics[method](call, (err, ctx) => (err ? failures.push(String(err.reason || err)) : sent.push(ctx.event.messageId)));
  }
  await analytics.closeAndFlush({ timeout: 30000 });
  if (failures.length) throw new Error(failures.join('; '));
  return sent;
}

async function rudder() {
  const Analytics = require('@rudderstack/rudder-sdk-node');
  const failures = [];
  const client = new Analytics(writeKey, {
    dataPlaneUrl: collector,
    flushAt: 100,
    retryCount: 3,
    errorHandler: (err) => failures.push(String(err)),
  });
  const sent = [];
  for (const [method, call] of calls) {
    const messageId = `${sdk}-node-${run}-${sent.length}`;
    client[method]({ ...call, messageId });
    sent.push(messageId);
  }
  await client.flush();
  if (failures.length) throw new Error(failures.join('; '));
  return sent;
}

(sdk === 'segment' ? segment() : rudder()).then(
  (sent) => { console.log(JSON.stringify({ anonymousId, userId, sent })); process.exit(0); },
  (err) => { console.error(err && err.stack ? err.stack : err); process.exit(1); },
);
