// Tests for static/js/knowledge-socket.js. Run: node --test static/js/tests/
// Zero dependencies: a fake clock, a fake WebSocket and a fake fetch are injected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const require = createRequire(import.meta.url);
const SOURCE = fileURLToPath(new URL('../knowledge-socket.js', import.meta.url));
const KnowledgeSocket = require(SOURCE);

// ----- fakes ------------------------------------------------------------------------------

const flush = () => new Promise((resolve) => setImmediate(resolve));

class FakeClock {
  constructor() {
    this.t = 0;
    this.nextId = 1;
    this.timers = new Map();
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** Move virtual time forward, firing due timers in order and settling promises between. */
  async tick(ms = 0) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      let nextId = null;
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next.at)) {
          nextId = id;
          next = timer;
        }
      }
      if (next === null) break;
      this.timers.delete(nextId);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await flush();
  }
}

function makeFakeWebSocket() {
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = FakeWebSocket.CONNECTING;
      this.sent = [];
      this.closedByClient = null;
      FakeWebSocket.instances.push(this);
    }
    send(text) {
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error('not open');
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.closedByClient = { code, reason };
      this.readyState = FakeWebSocket.CLOSED;
      // Browsers fire close later; the client must ignore it for a socket it dropped.
      queueMicrotask(() => this.onclose && this.onclose({ code: 1005, reason: '' }));
    }
    // --- server side, driven by the tests ---
    serverOpen() {
      this.readyState = FakeWebSocket.OPEN;
      this.onopen && this.onopen({});
    }
    serverSend(msg) {
      this.onmessage && this.onmessage({ data: JSON.stringify(msg) });
    }
    serverClose(code = 1006, reason = '') {
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose && this.onclose({ code, reason });
    }
    get lastSent() {
      return this.sent[this.sent.length - 1];
    }
  }
  FakeWebSocket.CONNECTING = 0;
  FakeWebSocket.OPEN = 1;
  FakeWebSocket.CLOSING = 2;
  FakeWebSocket.CLOSED = 3;
  FakeWebSocket.instances = [];
  return FakeWebSocket;
}

function makeFakeFetch() {
  const calls = [];
  const fetchImpl = (url, init) => new Promise((resolve, reject) => {
    const call = {
      url,
      init,
      query: new URL(url, 'http://page.test').searchParams,
      settled: false,
      respond(body, status = 200) {
        call.settled = true;
        resolve({ ok: status >= 200 && status < 300, status, json: () => Promise.resolve(body) });
      },
      fail(err = new TypeError('network down')) {
        call.settled = true;
        reject(err);
      },
      aborted: false,
    };
    if (init && init.signal) {
      init.signal.addEventListener('abort', () => {
        call.aborted = true;
        if (!call.settled) reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
      });
    }
    calls.push(call);
  });
  fetchImpl.calls = calls;
  fetchImpl.last = () => calls[calls.length - 1];
  return fetchImpl;
}

/** A client wired to fakes, recording everything it reports. */
function harness(options = {}) {
  const clock = new FakeClock();
  const WS = 'WebSocketImpl' in options ? options.WebSocketImpl : makeFakeWebSocket();
  const fetchImpl = makeFakeFetch();
  const seen = { events: [], statuses: [], resets: [], errors: [], gaps: [] };
  const ks = new KnowledgeSocket({
    location: { protocol: 'http:', host: 'kx.test' },
    WebSocketImpl: WS,
    fetchImpl,
    setTimeoutImpl: clock.setTimeout,
    clearTimeoutImpl: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    warn: false,
    onEvent: (ev) => seen.events.push(ev),
    onStatus: (status) => seen.statuses.push(status),
    onReset: (info) => seen.resets.push(info),
    onError: (err) => seen.errors.push(err),
    onGap: (gap) => seen.gaps.push(gap),
    ...options,
  });
  const sockets = () => (WS ? WS.instances : []);
  const socket = () => sockets()[sockets().length - 1];
  const seqs = () => seen.events.map((e) => e.seq);
  return { ks, clock, WS, fetchImpl, seen, sockets, socket, seqs };
}

const EPOCH = 'e-1';
const ev = (seq, extra = {}) => ({ type: 'event', seq, epoch: EPOCH, event: 'knowledge_broadcast', data: { id: seq }, ...extra });
const subscribed = (extra = {}) => ({ type: 'subscribed', epoch: EPOCH, since: null, recovered: true, top: 10, ...extra });
const pollAnswer = (results, extra = {}) => ({ epoch: EPOCH, results: results.map((seq) => { const { type, ...rest } = ev(seq); return rest; }), top: results.length ? results[results.length - 1] : 10, recovered: true, ...extra });

/** Open the current socket and answer its subscribe. */
async function goLive(h, sub = {}) {
  h.socket().serverOpen();
  h.socket().serverSend(subscribed(sub));
  await h.clock.tick(0);
}

// ----- loading ----------------------------------------------------------------------------

test('loads as a plain <script>: sets window.KnowledgeSocket, needs no module', () => {
  const context = { window: {} };
  vm.runInNewContext(readFileSync(SOURCE, 'utf8'), context);
  assert.equal(typeof context.window.KnowledgeSocket, 'function');
  assert.equal(context.window.KnowledgeSocket.STATUS.LIVE, 'live');
});

test('source parses as ES2020 (no newer syntax for older browsers)', (t) => {
  const check = spawnSync(process.execPath, ['--expose-internals', '-e', `
    const acorn = require('internal/deps/acorn/acorn/dist/acorn');
    acorn.parse(require('fs').readFileSync(${JSON.stringify(SOURCE)}, 'utf8'), { ecmaVersion: 2020 });
  `], { encoding: 'utf8' });
  if (check.status !== 0 && /Cannot find module/.test(check.stderr)) {
    t.skip('this Node build does not expose its acorn');
    return;
  }
  assert.equal(check.status, 0, check.stderr);
});

// ----- connecting and subscribing ---------------------------------------------------------

test('subscribes on open with the page filters and since; live-only start resumes from top', async () => {
  const h = harness({ filters: { types: ['risk_pattern'], sources: 'think', events: ['knowledge_broadcast', 'conflict_detected'] } });
  h.ks.start();
  assert.equal(h.socket().url, 'ws://kx.test/ws/knowledge/');
  assert.deepEqual(h.seen.statuses, ['connecting']);
  h.socket().serverOpen();
  assert.deepEqual(h.socket().sent, [{
    action: 'subscribe', types: ['risk_pattern'], sources: ['think'],
    events: ['knowledge_broadcast', 'conflict_detected'], since: null,
  }]);
  h.socket().serverSend(subscribed({ top: 41 }));
  assert.deepEqual(h.seen.statuses, ['connecting', 'live']);
  assert.equal(h.ks.epoch, EPOCH);
  // Nothing arrived yet, but a drop now must resume after 41, not "live only" again.
  assert.equal(h.ks.lastSeq, 41);
});

test('omits empty filters (= all) and uses wss on https pages, ?token= when given', () => {
  const h = harness({ location: { protocol: 'https:', host: 'kx.example' }, token: 'wk 1/2' });
  h.ks.start();
  assert.equal(h.socket().url, 'wss://kx.example/ws/knowledge/?token=wk%201%2F2');
  h.socket().serverOpen();
  assert.deepEqual(h.socket().sent, [{ action: 'subscribe', since: null }]);
});

test('a configured url: relative, http(s) and ws forms', () => {
  for (const [url, expected] of [
    ['/custom/ws/', 'ws://kx.test/custom/ws/'],
    ['https://other.test/ws/knowledge/', 'wss://other.test/ws/knowledge/'],
    ['ws://other.test/ws/knowledge/?x=1', 'ws://other.test/ws/knowledge/?x=1&token=t'],
  ]) {
    const h = harness({ url, token: url.includes('?x=1') ? 't' : null });
    h.ks.start();
    assert.equal(h.socket().url, expected);
    h.ks.stop();
  }
});

// ----- resume, dedupe, gaps ---------------------------------------------------------------

test('after a drop it resumes with since = last seq and loses nothing', async () => {
  const h = harness({ since: 10, epoch: EPOCH });
  h.ks.start();
  h.socket().serverOpen();
  assert.equal(h.socket().lastSent.since, 10);
  h.socket().serverSend(subscribed({ since: 10, top: 12 }));
  h.socket().serverSend(ev(11));
  h.socket().serverSend(ev(12));
  h.socket().serverClose(1006);
  assert.deepEqual(h.seen.statuses, ['connecting', 'live', 'reconnecting']);
  await h.clock.tick(500); // attempt 0: at most 500 ms
  assert.equal(h.sockets().length, 2);
  h.socket().serverOpen();
  assert.equal(h.socket().lastSent.since, 12);
  h.socket().serverSend(subscribed({ since: 12, top: 14 }));
  h.socket().serverSend(ev(13));
  h.socket().serverSend(ev(14));
  assert.deepEqual(h.seqs(), [11, 12, 13, 14]);
  assert.equal(h.ks.lastSeq, 14);
  assert.equal(h.ks.status, 'live');
  assert.deepEqual(h.seen.resets, []);
});

test('duplicates (seq <= lastSeq) are dropped; events carry seq, epoch, event and data', async () => {
  const h = harness({ since: 20, epoch: EPOCH });
  h.ks.start();
  await goLive(h, { since: 20, top: 23 });
  for (const seq of [19, 20, 21, 21, 22, 21, 23, 23]) h.socket().serverSend(ev(seq));
  assert.deepEqual(h.seqs(), [21, 22, 23]);
  assert.equal(h.ks.stats.duplicates, 5);
  assert.deepEqual(h.seen.events[0], { seq: 21, epoch: EPOCH, event: 'knowledge_broadcast', data: { id: 21 } });
});

test('a hole in seq is reported through onGap when unfiltered, and not when filtered', async () => {
  const h = harness({ since: 5, epoch: EPOCH });
  h.ks.start();
  await goLive(h, { since: 5 });
  h.socket().serverSend(ev(6));
  h.socket().serverSend(ev(9));
  assert.deepEqual(h.seen.gaps, [{ after: 6, seq: 9, missing: 2 }]);
  assert.deepEqual(h.seqs(), [6, 9]);

  const f = harness({ since: 5, epoch: EPOCH, filters: { types: ['risk_pattern'] } });
  f.ks.start();
  await goLive(f, { since: 5 });
  f.socket().serverSend(ev(6));
  f.socket().serverSend(ev(9)); // 7 and 8 were other types: expected
  assert.deepEqual(f.seen.gaps, []);
});

// ----- resets -----------------------------------------------------------------------------

test('a new epoch on reconnect calls onReset, moves to top, and stays live', async () => {
  const h = harness({ since: 100, epoch: EPOCH });
  h.ks.start();
  await goLive(h, { since: 100, top: 101 });
  h.socket().serverSend(ev(101));
  h.socket().serverClose(1001);
  await h.clock.tick(500);
  h.socket().serverOpen();
  assert.equal(h.socket().lastSent.since, 101);
  h.socket().serverSend({ type: 'subscribed', epoch: 'e-2', since: 101, recovered: false, top: 3 });
  assert.deepEqual(h.seen.resets, [{
    reason: 'epoch_changed', epoch: 'e-2', previousEpoch: EPOCH, previousSeq: 101, top: 3,
  }]);
  assert.equal(h.ks.epoch, 'e-2');
  assert.equal(h.ks.lastSeq, 3);
  // Live events of the new log are delivered even though their seqs are below 101.
  h.socket().serverSend(ev(4, { epoch: 'e-2' }));
  assert.deepEqual(h.seqs(), [101, 4]);
  assert.equal(h.seen.events[1].epoch, 'e-2');
  assert.equal(h.ks.status, 'live');
});

test('recovered: false in the same epoch also resets (the log was pruned past since)', async () => {
  const h = harness({ since: 7, epoch: EPOCH });
  h.ks.start();
  await goLive(h, { since: 7, recovered: false, top: 5000 });
  assert.equal(h.seen.resets.length, 1);
  assert.equal(h.seen.resets[0].reason, 'not_recovered');
  assert.equal(h.ks.lastSeq, 5000);
  h.socket().serverSend(ev(4990)); // replayed history the reload already covers
  h.socket().serverSend(ev(5001));
  assert.deepEqual(h.seqs(), [5001]);
});

test('an event from another epoch mid-stream resets and is delivered', async () => {
  const h = harness({ since: 50, epoch: EPOCH });
  h.ks.start();
  await goLive(h, { since: 50 });
  h.socket().serverSend(ev(1, { epoch: 'e-9' }));
  assert.equal(h.seen.resets.length, 1);
  assert.equal(h.seen.resets[0].reason, 'epoch_changed');
  assert.deepEqual(h.seqs(), [1]);
  assert.equal(h.ks.lastSeq, 1);
});

// ----- close codes ------------------------------------------------------------------------

test('close 4401 stops for good and reports an auth error', async () => {
  const h = harness();
  h.ks.start();
  h.socket().serverOpen();
  h.socket().serverClose(4401, 'bad token');
  assert.equal(h.ks.status, 'stopped');
  assert.equal(h.seen.statuses.at(-1), 'stopped');
  assert.deepEqual(h.seen.errors.map((e) => [e.type, e.code]), [['auth', 4401]]);
  await h.clock.tick(10 * 60 * 1000);
  assert.equal(h.sockets().length, 1);
  assert.equal(h.fetchImpl.calls.length, 0);
});

test('close 4008 (too slow) resumes at once with since; a repeat backs off', async () => {
  const h = harness({ since: 30, epoch: EPOCH, random: () => 1 });
  h.ks.start();
  await goLive(h, { since: 30 });
  h.socket().serverSend(ev(31));
  h.socket().serverClose(4008);
  await h.clock.tick(0);
  assert.equal(h.sockets().length, 2);
  h.socket().serverOpen();
  assert.equal(h.socket().lastSent.since, 31);
  h.socket().serverSend(subscribed({ since: 31 }));
  h.socket().serverClose(4008); // again before the connection was stable
  await h.clock.tick(0);
  assert.equal(h.sockets().length, 2);
  await h.clock.tick(500);
  assert.equal(h.sockets().length, 3);
});

test('close 4013 (server busy) waits its retry-after plus jitter and never falls back to polling', async () => {
  // random() = 1 makes the jitter its ceiling: the wait is retry-after + min(cap, 500 * 2^n).
  const h = harness({ random: () => 1 });
  h.ks.start();
  for (const [n, wait] of [[0, 2000 + 500], [1, 2000 + 1000], [2, 2000 + 2000], [3, 2000 + 4000]]) {
    h.socket().serverOpen(); // the server accepts, then closes: it is too busy for a handshake
    h.socket().serverClose(4013, 'retry after 2 s');
    const before = h.sockets().length;
    await h.clock.tick(wait - 1);
    assert.equal(h.sockets().length, before, `refusal ${n}: no retry before ${wait} ms`);
    await h.clock.tick(1);
    assert.equal(h.sockets().length, before + 1, `refusal ${n}: retry at ${wait} ms`);
  }
  assert.equal(h.fetchImpl.calls.length, 0, 'four refusals are not four failed connects');
  assert.equal(h.ks.mode, 'ws');
  assert.equal(h.ks.stats.refusals, 4);
  // Without a reason (daphne drops close reasons): 1 s plus the jitter.
  h.socket().serverOpen();
  h.socket().serverClose(4013, '');
  const before = h.sockets().length;
  await h.clock.tick(1000 + 8000 - 1);
  assert.equal(h.sockets().length, before);
  await h.clock.tick(1);
  assert.equal(h.sockets().length, before + 1);
  await goLive(h);
  assert.equal(h.ks.status, 'live');
});

test('retryDelay: the server\'s retry-after plus full jitter', () => {
  assert.equal(KnowledgeSocket.retryDelay(0, 1000, {}, () => 0), 1000);
  assert.equal(KnowledgeSocket.retryDelay(0, 1000, {}, () => 0.5), 1250);
  assert.equal(KnowledgeSocket.retryDelay(3, 1000, {}, () => 0.999999), 1000 + 3999);
  assert.equal(KnowledgeSocket.retryDelay(0, null, {}, () => 0.5), 250);
});

// ----- backoff ----------------------------------------------------------------------------

test('backoffDelay: full jitter within [0, min(cap, base * 2^n))', () => {
  const ceilings = [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000];
  ceilings.forEach((ceiling, attempt) => {
    assert.equal(KnowledgeSocket.backoffDelay(attempt, {}, () => 0), 0);
    assert.equal(KnowledgeSocket.backoffDelay(attempt, {}, () => 0.5), Math.floor(ceiling / 2));
    assert.ok(KnowledgeSocket.backoffDelay(attempt, {}, () => 0.999999) < ceiling);
    for (let i = 0; i < 200; i++) {
      const d = KnowledgeSocket.backoffDelay(attempt, {}, Math.random);
      assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d}`);
    }
  });
  assert.equal(KnowledgeSocket.backoffDelay(1000, {}, () => 0.999999), 14999); // no overflow
  assert.equal(KnowledgeSocket.backoffDelay(2, { backoffBaseMs: 100, backoffFactor: 3, backoffCapMs: 700 }, () => 0.999999), 699);
});

test('reconnect delays grow, cap at 15 s, and reset after a stable connection', async () => {
  // random() = 1 makes each delay its ceiling, so the schedule is observable exactly.
  const h = harness({ random: () => 1, fallbackAfter: 0 });
  h.ks.start();
  const waits = [500, 1000, 2000, 4000, 8000, 15000, 15000];
  for (const wait of waits) {
    const before = h.sockets().length;
    h.socket().serverClose(1006); // refused before open
    await h.clock.tick(wait - 1);
    assert.equal(h.sockets().length, before, `no retry before ${wait} ms`);
    await h.clock.tick(1);
    assert.equal(h.sockets().length, before + 1, `retry at ${wait} ms`);
  }
  // A connection that subscribes and holds for stableMs resets the backoff.
  await goLive(h);
  await h.clock.tick(10000);
  const before = h.sockets().length;
  h.socket().serverClose(1006);
  await h.clock.tick(500);
  assert.equal(h.sockets().length, before + 1);
});

test('a connection that drops before it is stable keeps backing off', async () => {
  const h = harness({ random: () => 1, fallbackAfter: 0 });
  h.ks.start();
  for (const wait of [500, 1000, 2000]) {
    await goLive(h);
    await h.clock.tick(1000); // up, but not for stableMs
    const before = h.sockets().length;
    h.socket().serverClose(1006);
    await h.clock.tick(wait - 1);
    assert.equal(h.sockets().length, before);
    await h.clock.tick(1);
    assert.equal(h.sockets().length, before + 1);
  }
});

// ----- heartbeat watchdog -----------------------------------------------------------------

test('heartbeat watchdog: silence past the timeout reopens the socket with since', async () => {
  const h = harness({ since: 60, epoch: EPOCH, random: () => 0 });
  h.ks.start();
  await goLive(h, { since: 60 });
  h.socket().serverSend(ev(61));
  await h.clock.tick(44000);
  h.socket().serverSend({ type: 'heartbeat', top: 61 });
  await h.clock.tick(44000);
  assert.equal(h.sockets().length, 1, 'heartbeats keep it alive');
  await h.clock.tick(1000); // 45 s since the last heartbeat
  const dead = h.sockets()[0];
  assert.equal(dead.closedByClient.code, 4000);
  assert.equal(h.sockets().length, 2);
  assert.ok(h.seen.errors.some((e) => e.type === 'timeout'));
  h.socket().serverOpen();
  assert.equal(h.socket().lastSent.since, 61);
  dead.serverSend(ev(62)); // late traffic from the dropped socket is ignored
  assert.deepEqual(h.seqs(), [61]);
});

test('the watchdog timeout is configurable and also bounds a connect that never opens', async () => {
  const h = harness({ heartbeatTimeoutMs: 5000, random: () => 0, fallbackAfter: 0 });
  h.ks.start();
  await h.clock.tick(4999);
  assert.equal(h.sockets().length, 1);
  await h.clock.tick(1);
  assert.equal(h.sockets().length, 2);
  assert.equal(h.sockets()[0].closedByClient.code, 4000);
});

test('heartbeat top is not trusted by default, and is with advanceOnTop', async () => {
  for (const [advanceOnTop, expected] of [[false, 70], [true, 90]]) {
    const h = harness({ since: 70, epoch: EPOCH, advanceOnTop });
    h.ks.start();
    await goLive(h, { since: 70 });
    h.socket().serverSend({ type: 'heartbeat', top: 90 });
    assert.equal(h.ks.lastSeq, expected);
  }
});

// ----- polling fallback -------------------------------------------------------------------

test('after 3 failed connects it long-polls with since and filters, then returns to WebSocket losslessly', async () => {
  const h = harness({ since: 5, epoch: EPOCH, random: () => 1, token: 'tok',
    filters: { types: ['risk_pattern', 'issue_pattern'], sources: ['think'], events: ['knowledge_broadcast'] } });
  h.ks.start();
  h.socket().serverClose(1006);
  await h.clock.tick(500);
  h.socket().serverClose(1006);
  await h.clock.tick(1000);
  h.socket().serverClose(1006); // third consecutive failure
  await h.clock.tick(0);
  assert.equal(h.sockets().length, 3);
  assert.equal(h.fetchImpl.calls.length, 1);
  let call = h.fetchImpl.last();
  assert.equal(call.url, '/api/knowledge/events?since=5&wait=25&types=risk_pattern,issue_pattern&sources=think&events=knowledge_broadcast');
  assert.equal(call.init.headers.Authorization, 'Token tok');
  assert.equal(call.init.credentials, 'same-origin');

  call.respond(pollAnswer([6, 7]));
  await h.clock.tick(0);
  assert.equal(h.ks.status, 'polling');
  assert.equal(h.ks.mode, 'poll');
  call = h.fetchImpl.last();
  assert.equal(call.query.get('since'), '7');
  call.respond(pollAnswer([7, 8])); // 7 again: dropped
  await h.clock.tick(0);
  assert.deepEqual(h.seqs(), [6, 7, 8]);

  // wsRetryMs later a probe socket opens while the next poll is still waiting.
  await h.clock.tick(30000);
  const pending = h.fetchImpl.last();
  assert.equal(pending.settled, false);
  const probe = h.socket();
  assert.equal(h.sockets().length, 4);
  probe.serverOpen();
  assert.equal(probe.lastSent.since, 8);
  assert.deepEqual(probe.lastSent.types, ['risk_pattern', 'issue_pattern']);
  pending.respond(pollAnswer([9])); // the poll answers before the probe subscribes
  await h.clock.tick(0);
  probe.serverSend(subscribed({ since: 8, top: 10 }));
  assert.equal(h.ks.mode, 'ws');
  assert.equal(h.ks.status, 'live');
  assert.equal(h.fetchImpl.last().aborted, true, 'the in-flight poll is aborted');
  const polls = h.fetchImpl.calls.length;
  probe.serverSend(ev(9)); // replay: already delivered by the poll
  probe.serverSend(ev(10));
  await h.clock.tick(40000); // (under the 45 s watchdog: no heartbeats in this test)
  assert.equal(h.fetchImpl.calls.length, polls, 'no polling once live again');
  assert.deepEqual(h.seqs(), [6, 7, 8, 9, 10]);
  assert.deepEqual(h.seen.statuses, ['connecting', 'reconnecting', 'polling', 'live']);
});

test('a failed probe keeps polling and tries again after wsRetryMs', async () => {
  const h = harness({ WebSocketImpl: makeFakeWebSocket(), fallbackAfter: 1, wsRetryMs: 20000, random: () => 0 });
  h.ks.start();
  h.socket().serverClose(1006);
  await h.clock.tick(0);
  h.fetchImpl.last().respond(pollAnswer([]));
  await h.clock.tick(1000);
  assert.equal(h.fetchImpl.calls.length, 2);
  await h.clock.tick(19000);
  assert.equal(h.sockets().length, 2);
  h.socket().serverClose(1006);
  await h.clock.tick(0);
  assert.equal(h.ks.mode, 'poll');
  await h.clock.tick(19999);
  assert.equal(h.sockets().length, 2);
  await h.clock.tick(1);
  assert.equal(h.sockets().length, 3);
});

test('without WebSocket it polls from the start; live-only start takes top from an empty answer', async () => {
  const h = harness({ WebSocketImpl: null });
  h.ks.start();
  const first = h.fetchImpl.last();
  assert.equal(first.query.has('since'), false);
  assert.equal(first.query.get('wait'), '25');
  first.respond({ epoch: EPOCH, results: [], top: 300, recovered: true });
  await h.clock.tick(0);
  assert.equal(h.ks.lastSeq, 300);
  assert.equal(h.ks.status, 'polling');
  // An empty answer that came back at once waits pollMinIntervalMs before the next poll.
  assert.equal(h.fetchImpl.calls.length, 1);
  await h.clock.tick(1000);
  assert.equal(h.fetchImpl.last().query.get('since'), '300');
  h.fetchImpl.last().respond(pollAnswer([303, 301], { top: 303 })); // out of order: sorted
  await h.clock.tick(0);
  assert.deepEqual(h.seqs(), [301, 303]);
  assert.equal(h.fetchImpl.last().query.get('since'), '303', 'events: poll again at once');
});

test('WebSocket to polling loses nothing and repeats nothing', async () => {
  const h = harness({ since: 0, epoch: EPOCH, fallbackAfter: 1, random: () => 0 });
  h.ks.start();
  await goLive(h, { since: 0 });
  for (const seq of [1, 2, 3]) h.socket().serverSend(ev(seq));
  h.socket().serverClose(1011);
  await h.clock.tick(0);
  h.socket().serverClose(1006); // the reconnect fails: fall back
  await h.clock.tick(0);
  assert.equal(h.ks.mode, 'poll');
  assert.equal(h.fetchImpl.last().query.get('since'), '3');
  h.fetchImpl.last().respond(pollAnswer([3, 4]));
  await h.clock.tick(0);
  assert.deepEqual(h.seqs(), [1, 2, 3, 4]);
});

test('an epoch change seen by a poll resets', async () => {
  const h = harness({ WebSocketImpl: null, since: 40, epoch: EPOCH });
  h.ks.start();
  h.fetchImpl.last().respond({ epoch: 'e-2', results: [{ seq: 2, epoch: 'e-2', event: 'x', data: {} }], top: 2, recovered: false });
  await h.clock.tick(0);
  assert.deepEqual(h.seen.resets.map((r) => [r.reason, r.previousSeq, r.top]), [['epoch_changed', 40, 2]]);
  assert.equal(h.ks.lastSeq, 2);
  assert.deepEqual(h.seqs(), [], 'history up to top is covered by the reload');
});

test('poll failures back off; a hung poll is aborted by its timeout; 401 stops', async () => {
  const h = harness({ WebSocketImpl: null, random: () => 1, since: 1, epoch: EPOCH });
  h.ks.start();
  h.fetchImpl.last().fail();
  await h.clock.tick(0);
  assert.equal(h.ks.status, 'reconnecting');
  await h.clock.tick(499);
  assert.equal(h.fetchImpl.calls.length, 1);
  await h.clock.tick(1);
  assert.equal(h.fetchImpl.calls.length, 2);
  h.fetchImpl.last().respond({ detail: 'boom' }, 502);
  await h.clock.tick(1000);
  assert.equal(h.fetchImpl.calls.length, 3);
  // No answer at all: after pollWait + 10 s the request is aborted and retried.
  await h.clock.tick(35000);
  assert.equal(h.fetchImpl.calls[2].aborted, true);
  assert.ok(h.seen.errors.some((e) => e.type === 'timeout'));
  await h.clock.tick(4000);
  assert.equal(h.fetchImpl.calls.length, 4);
  h.fetchImpl.last().respond({ detail: 'no' }, 401);
  await h.clock.tick(0);
  assert.equal(h.ks.status, 'stopped');
  assert.equal(h.seen.errors.at(-1).type, 'auth');
  await h.clock.tick(600000);
  assert.equal(h.fetchImpl.calls.length, 4);
});

// ----- filters, stop, robustness ----------------------------------------------------------

test('setFilters re-subscribes from lastSeq on a live socket, and restarts a poll', async () => {
  const h = harness({ since: 8, epoch: EPOCH });
  h.ks.start();
  await goLive(h, { since: 8 });
  h.socket().serverSend(ev(9));
  h.ks.setFilters({ types: ['risk_pattern'], events: ['conflict_detected'] });
  assert.deepEqual(h.socket().lastSent, { action: 'subscribe', types: ['risk_pattern'], events: ['conflict_detected'], since: 9 });
  h.ks.setFilters({ types: [] }); // clear one key, keep the others
  assert.deepEqual(h.socket().lastSent, { action: 'subscribe', events: ['conflict_detected'], since: 9 });

  const p = harness({ WebSocketImpl: null, since: 8, epoch: EPOCH });
  p.ks.start();
  const first = p.fetchImpl.last();
  p.ks.setFilters({ sources: ['dream'] });
  await p.clock.tick(0);
  assert.equal(first.aborted, true);
  assert.equal(p.fetchImpl.calls.length, 2);
  assert.equal(p.fetchImpl.last().query.get('sources'), 'dream');
});

test('stop() closes the socket, cancels every timer, and start() resumes from lastSeq', async () => {
  const h = harness({ since: 3, epoch: EPOCH });
  h.ks.start();
  await goLive(h, { since: 3 });
  h.socket().serverSend(ev(4));
  h.ks.stop();
  assert.equal(h.sockets()[0].closedByClient.code, 1000);
  assert.equal(h.ks.status, 'stopped');
  assert.equal(h.clock.timers.size, 0);
  await h.clock.tick(600000);
  assert.equal(h.sockets().length, 1);
  h.ks.start();
  h.socket().serverOpen();
  assert.equal(h.socket().lastSent.since, 4);
});

test('a throwing onEvent does not stop the stream or cause redelivery', async () => {
  const errors = [];
  const got = [];
  const h = harness({
    since: 0, epoch: EPOCH,
    onEvent: (e) => { got.push(e.seq); if (e.seq === 1) throw new Error('page bug'); },
    onError: (e) => errors.push(e),
  });
  h.ks.start();
  await goLive(h, { since: 0 });
  h.socket().serverSend(ev(1));
  h.socket().serverSend(ev(2));
  assert.deepEqual(got, [1, 2]);
  assert.equal(errors[0].type, 'callback');
  assert.equal(errors[0].callback, 'onEvent');
});

test('server error messages and bad JSON are reported, not fatal', async () => {
  const h = harness();
  h.ks.start();
  await goLive(h);
  h.socket().serverSend({ type: 'error', message: 'unknown type: nope' });
  h.socket().onmessage({ data: '{oops' });
  h.socket().serverSend({ type: 'something_new' });
  assert.deepEqual(h.seen.errors.map((e) => e.type), ['server', 'protocol']);
  assert.equal(h.ks.status, 'live');
});

// ----- Node: no page, no global WebSocket (issue 15) ---------------------------------------

test('without a page location a relative pollUrl is refused at construction, clearly', () => {
  assert.throws(() => new KnowledgeSocket({ location: null, WebSocketImpl: null }),
    (err) => err instanceof TypeError && /pollUrl "\/api\/knowledge\/events" is relative/.test(err.message)
      && /baseUrl/.test(err.message));
  assert.throws(() => new KnowledgeSocket({ location: null, url: '/ws/knowledge/', pollUrl: null }),
    /url "\/ws\/knowledge\/" is relative/);
  assert.throws(() => new KnowledgeSocket({ baseUrl: 'kx.test:8000' }), /baseUrl must be an absolute/);
  // Absolute URLs, or pollUrl: null, are fine without a page.
  new KnowledgeSocket({ location: null, pollUrl: 'http://kx.test/api/knowledge/events' });
  new KnowledgeSocket({ location: null, url: 'ws://kx.test/ws/knowledge/', pollUrl: null });
});

test('baseUrl derives the WebSocket and poll URLs (https -> wss), page or not', async () => {
  const h = harness({ location: null, baseUrl: 'https://kx.example:8443/ignored', token: 't' });
  h.ks.start();
  assert.equal(h.socket().url, 'wss://kx.example:8443/ws/knowledge/?token=t');
  h.ks.stop();
  const p = harness({ location: null, baseUrl: 'http://kx.test:8000', WebSocketImpl: null });
  p.ks.start();
  await p.clock.tick(0);
  assert.match(p.fetchImpl.last().url, /^http:\/\/kx\.test:8000\/api\/knowledge\/events\?wait=25$/);
  p.ks.stop();
});

test('in a browser the relative defaults still resolve against the page', async () => {
  const h = harness({ WebSocketImpl: null });
  h.ks.start();
  await h.clock.tick(0);
  assert.match(h.fetchImpl.last().url, /^\/api\/knowledge\/events\?/);
  h.ks.stop();
});

test('falling back to polling is said once: onError {type: fallback} and one console.warn', async () => {
  const warned = [];
  const original = console.warn;
  console.warn = (...args) => warned.push(args.join(' '));
  try {
    const h = harness({ WebSocketImpl: null, warn: true });
    h.ks.start();
    await h.clock.tick(0);
    h.ks.stop();
    h.ks.start();
    await h.clock.tick(0);
    h.ks.stop();
    const notices = h.seen.errors.filter((e) => e.type === 'fallback');
    assert.equal(notices.length, 2);
    assert.match(notices[0].message, /WebSocketImpl: require\('ws'\)/);
    assert.equal(warned.length, 1);
    assert.match(warned[0], /falling back to REST long polling/);
    // After failed connects the reason says so.
    const f = harness({ warn: false });
    f.ks.start();
    for (let i = 0; i < 3; i++) {
      f.socket().serverClose(1006);
      await f.clock.tick(60000);
    }
    assert.equal(f.ks.mode, 'poll');
    assert.match(f.seen.errors.find((e) => e.type === 'fallback').message, /3 WebSocket connects failed/);
    f.ks.stop();
  } finally {
    console.warn = original;
  }
});

test('package.json is ready to publish: main/exports load the client, ws is an optional peer', () => {
  const pkgPath = fileURLToPath(new URL('../package.json', import.meta.url));
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
  for (const field of ['name', 'version', 'main', 'exports', 'files', 'engines', 'license']) {
    assert.ok(pkg[field], 'package.json lacks ' + field);
  }
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  assert.equal(require(new URL('../' + pkg.main, import.meta.url).pathname), KnowledgeSocket);
  assert.equal(require(new URL('../' + pkg.exports['.'], import.meta.url).pathname), KnowledgeSocket);
  assert.ok(pkg.files.includes(pkg.main));
  assert.deepEqual(pkg.dependencies || {}, {}); // no runtime dependencies
  assert.equal(pkg.peerDependenciesMeta.ws.optional, true);
  // Self-reference by name works (how examples/node-client.js loads it).
  assert.equal(require(pkg.name), KnowledgeSocket);
});
