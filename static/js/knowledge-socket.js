/*
 * knowledge-socket.js: browser client for the Knowledge Exchange live feed.
 *
 * Plain ES2020, no dependencies, no build step. Load it with <script src> (it sets
 * window.KnowledgeSocket) or require() it under Node (module.exports).
 *
 * In a browser the URLs default to the page's origin. Outside a browser (Node) there is no
 * page: give absolute `url`/`pollUrl` (or `baseUrl: 'http://host:port'`), and, since Node 20
 * has no global WebSocket, `WebSocketImpl: require('ws')`; without it the client polls and
 * says so once through onError({type: 'fallback'}) and console.warn.
 *
 * What it promises (see docs/realtime-client.md):
 * - lossless resume: every (re)subscribe and every poll asks for `since = lastSeq`;
 * - no duplicates: an event with seq <= lastSeq is dropped, whichever transport brought it;
 * - no silent gaps: a changed epoch or `recovered: false` calls onReset, then stays live;
 * - WebSocket first, REST long polling as a fallback, and back to WebSocket when possible.
 */
(function (factory) {
  'use strict';
  const KnowledgeSocket = factory();
  if (typeof module === 'object' && module !== null && module.exports) {
    module.exports = KnowledgeSocket;
  }
  if (typeof window !== 'undefined') {
    window.KnowledgeSocket = KnowledgeSocket;
  }
})(function () {
  'use strict';

  const STATUS = Object.freeze({
    CONNECTING: 'connecting',
    LIVE: 'live',
    POLLING: 'polling',
    RECONNECTING: 'reconnecting',
    STOPPED: 'stopped',
  });

  const CLOSE_AUTH = 4401; // no or bad credentials: do not retry
  const CLOSE_TOO_SLOW = 4008; // server dropped us for lagging: resume at once
  // The server is busy (too many handshakes in progress; docs/realtime.md "Handshake bound"):
  // reason 'retry after N s' (none under daphne: 1 s). Wait that long plus jitter; not a
  // failed connect.
  const CLOSE_TRY_AGAIN = 4013;
  const DEFAULT_RETRY_AFTER_MS = 1000;
  const CLOSE_WATCHDOG = 4000; // our own code when the heartbeat watchdog fires
  const FILTER_KEYS = ['types', 'sources', 'events'];

  const DEFAULTS = Object.freeze({
    url: null, // default: ws(s)://<page host or baseUrl host>/ws/knowledge/
    pollUrl: '/api/knowledge/events', // relative to the page, or to baseUrl; null: no polling
    baseUrl: null, // 'http(s)://host:port': resolves relative url/pollUrl (required in Node)
    warn: true, // console.warn once when falling back to polling (onError is called anyway)
    token: null, // worker token: ?token= on the socket, Authorization: Token on polls
    filters: null, // {types: [], sources: [], events: []}; empty = all
    since: null, // the seq the page's state already reflects (null: live only)
    epoch: null, // the log epoch that `since` belongs to
    backoffBaseMs: 500,
    backoffFactor: 2,
    backoffCapMs: 15000,
    stableMs: 10000, // a socket up this long resets the backoff
    heartbeatTimeoutMs: 45000, // silence longer than this: the socket is dead
    fallbackAfter: 3, // consecutive failed connects before polling (0: never)
    wsRetryMs: 30000, // while polling, try WebSocket again this often
    pollWait: 25, // seconds, the server-side long-poll wait
    pollTimeoutMs: null, // default: pollWait * 1000 + 10000
    pollMinIntervalMs: 1000, // floor between two polls that returned nothing
    advanceOnTop: false, // trust heartbeat/poll `top` as a delivered-through position
  });

  function isSeq(value) {
    return typeof value === 'number' && Number.isInteger(value) && value >= 0;
  }

  function toList(value) {
    if (value === null || value === undefined || value === '') return [];
    const list = Array.isArray(value) ? value : [value];
    return list.filter((v) => v !== null && v !== undefined && v !== '').map(String);
  }

  /** Full-jitter exponential backoff: a uniform draw in [0, min(cap, base * factor^attempt)). */
  function backoffDelay(attempt, options, random) {
    const o = options || {};
    const base = o.backoffBaseMs !== undefined ? o.backoffBaseMs : DEFAULTS.backoffBaseMs;
    const factor = o.backoffFactor !== undefined ? o.backoffFactor : DEFAULTS.backoffFactor;
    const cap = o.backoffCapMs !== undefined ? o.backoffCapMs : DEFAULTS.backoffCapMs;
    const ceiling = Math.min(cap, base * Math.pow(factor, Math.max(0, attempt)));
    return Math.floor((random || Math.random)() * ceiling);
  }

  /**
   * The wait before the next connect: the server's retry-after (ms; null: it gave none) plus
   * the full-jitter backoff, so that clients refused together do not all return together.
   */
  function retryDelay(attempt, retryAfterMs, options, random) {
    return Math.max(0, retryAfterMs || 0) + backoffDelay(attempt, options, random);
  }

  /** Milliseconds from a close reason 'retry after N s' (close 4013), or null. */
  function retryAfterFromReason(reason) {
    const m = /retry after (\d+(?:\.\d+)?) ?s/.exec(String(reason || ''));
    return m ? Math.round(parseFloat(m[1]) * 1000) : null;
  }

  class KnowledgeSocket {
    constructor(options) {
      const given = options || {};
      const o = Object.assign({}, DEFAULTS, given);
      if (o.pollTimeoutMs === null || o.pollTimeoutMs === undefined) {
        o.pollTimeoutMs = o.pollWait * 1000 + 10000;
      }
      this._o = o;

      // Injection points (tests, or unusual hosts). An explicit null means "not available".
      this._WS = 'WebSocketImpl' in given
        ? given.WebSocketImpl
        : (typeof WebSocket !== 'undefined' ? WebSocket : null);
      this._fetch = 'fetchImpl' in given
        ? given.fetchImpl
        : (typeof fetch === 'function' ? (u, init) => fetch(u, init) : null);
      this._Abort = 'AbortControllerImpl' in given
        ? given.AbortControllerImpl
        : (typeof AbortController !== 'undefined' ? AbortController : null);
      this._location = 'location' in given
        ? given.location
        : (typeof location !== 'undefined' ? location : null);
      this._setTimeout = given.setTimeoutImpl || ((fn, ms) => setTimeout(fn, ms));
      this._clearTimeout = given.clearTimeoutImpl || ((id) => clearTimeout(id));
      this._now = given.now || (() => Date.now());
      this._random = given.random || Math.random;

      if (o.baseUrl !== null && o.baseUrl !== undefined && !/^https?:\/\/[^/]/i.test(String(o.baseUrl))) {
        throw new TypeError('KnowledgeSocket: baseUrl must be an absolute http(s) URL, got ' +
          JSON.stringify(o.baseUrl));
      }
      // No page to resolve against (Node): a relative URL can never work, so say so now
      // instead of failing every poll with "Failed to parse URL".
      if (!this._origin()) {
        if (o.pollUrl && !/^https?:\/\//i.test(o.pollUrl)) {
          throw new TypeError('KnowledgeSocket: pollUrl ' + JSON.stringify(o.pollUrl) +
            ' is relative and there is no page location (Node?): pass baseUrl: ' +
            "'http://host:port', an absolute pollUrl, or pollUrl: null");
        }
        if (o.url && !/^(wss?|https?):\/\//i.test(o.url)) {
          throw new TypeError('KnowledgeSocket: url ' + JSON.stringify(o.url) +
            ' is relative and there is no page location (Node?): pass baseUrl or an absolute url');
        }
      }
      this._warned = false;

      this._filters = { types: [], sources: [], events: [] };
      this._mergeFilters(o.filters || {});
      this._lastSeq = isSeq(o.since) ? o.since : null;
      this._epoch = o.epoch === undefined || o.epoch === null ? null : String(o.epoch);

      this._status = null;
      this._running = false;
      this._mode = null; // 'ws' | 'poll'
      this._ws = null;
      this._wsSubscribed = false;
      this._attempt = 0; // backoff exponent for WebSocket reconnects
      this._failures = 0; // consecutive connects that closed before `subscribed`
      this._slowCloses = 0; // consecutive 4008 closes without a stable period between
      this._pollAttempt = 0;
      this._pollGen = 0; // bumped to disown an in-flight poll
      this._pollAbort = null;
      this._timers = {};
      this.stats = { events: 0, duplicates: 0, gaps: 0, resets: 0, reconnects: 0, refusals: 0 };
    }

    // ----- public API ---------------------------------------------------------------------

    /** The seq of the last event delivered (or the position reached); null before any. */
    get lastSeq() { return this._lastSeq; }
    /** The event log epoch that lastSeq belongs to. */
    get epoch() { return this._epoch; }
    /** One of KnowledgeSocket.STATUS, null before start(). */
    get status() { return this._status; }
    /** 'ws', 'poll', or null when stopped. */
    get mode() { return this._mode; }
    get filters() {
      return { types: this._filters.types.slice(), sources: this._filters.sources.slice(),
        events: this._filters.events.slice() };
    }

    start() {
      if (this._running) return this;
      this._running = true;
      this._failures = 0;
      this._attempt = 0;
      this._slowCloses = 0;
      this._setStatus(STATUS.CONNECTING);
      if (this._WS && this._wsUrl()) {
        this._mode = 'ws';
        this._connect();
      } else if (this._canPoll()) {
        this._fallbackNotice(this._WS
          ? 'no WebSocket URL (no page location and no url/baseUrl)'
          : 'no WebSocket implementation (Node: pass WebSocketImpl: require(\'ws\'))');
        this._enterPolling();
      } else {
        this._emitError({ type: 'unsupported', message: this._WS || this._fetch
          ? 'no usable URL: pass url, pollUrl or baseUrl'
          : 'neither WebSocket nor fetch is available' });
        this._halt();
      }
      return this;
    }

    /**
     * Replace the given filter keys (others are kept) and re-subscribe from lastSeq.
     * Events at or below lastSeq that only the new filters match are not replayed.
     */
    setFilters(filters) {
      this._mergeFilters(filters || {});
      if (!this._running) return this;
      if (this._ws && this._wsIsOpen(this._ws)) this._sendSubscribe();
      if (this._mode === 'poll') {
        this._disownPoll();
        this._pollNow();
      }
      return this;
    }

    stop() {
      if (!this._running && this._status === STATUS.STOPPED) return this;
      this._halt();
      return this;
    }

    // ----- WebSocket ----------------------------------------------------------------------

    /** {protocol, host} of baseUrl, else of the page; null in Node without baseUrl. */
    _origin() {
      const base = this._o.baseUrl;
      if (base) {
        const m = /^(https?:)\/\/([^/?#]+)/i.exec(String(base));
        return { protocol: m[1].toLowerCase(), host: m[2] };
      }
      const loc = this._location;
      return loc && loc.host ? { protocol: loc.protocol, host: loc.host } : null;
    }

    _wsUrl() {
      const loc = this._origin();
      const scheme = loc && loc.protocol === 'https:' ? 'wss:' : 'ws:';
      let url = this._o.url;
      if (!url) {
        if (!loc) return null;
        url = scheme + '//' + loc.host + '/ws/knowledge/';
      } else if (url.startsWith('//')) {
        url = scheme + url;
      } else if (url.startsWith('/')) {
        if (!loc) return null;
        url = scheme + '//' + loc.host + url;
      } else if (/^https?:/i.test(url)) {
        url = url.replace(/^http/i, 'ws');
      }
      if (this._o.token) {
        url += (url.indexOf('?') === -1 ? '?' : '&') + 'token=' + encodeURIComponent(this._o.token);
      }
      return url;
    }

    _wsIsOpen(ws) {
      const open = this._WS && this._WS.OPEN !== undefined ? this._WS.OPEN : 1;
      return ws.readyState === open;
    }

    _connect() {
      this._clearTimer('reconnect');
      if (!this._running) return;
      let ws;
      try {
        ws = new this._WS(this._wsUrl());
      } catch (err) {
        // e.g. a CSP or a malformed URL: count it as a failed connect, asynchronously.
        this._emitError({ type: 'connect', message: String(err && err.message || err), error: err });
        this._ws = null;
        this._wsSubscribed = false;
        this._setTimer('reconnect', 0, () => this._afterClose(null, 'constructor failed', false));
        return;
      }
      this._ws = ws;
      this._wsSubscribed = false;
      ws.onopen = () => {
        if (ws !== this._ws) return;
        this._armWatchdog();
        this._sendSubscribe();
      };
      ws.onmessage = (ev) => {
        if (ws !== this._ws) return;
        this._armWatchdog();
        this._onWsMessage(ev.data);
      };
      ws.onerror = () => {}; // a close event always follows; it carries the code
      ws.onclose = (ev) => {
        if (ws !== this._ws) return;
        const wasSubscribed = this._wsSubscribed;
        this._dropSocket();
        this._afterClose(ev ? ev.code : null, ev ? ev.reason : '', wasSubscribed);
      };
      this._armWatchdog(); // also bounds a connect that never opens
    }

    _sendSubscribe() {
      const msg = { action: 'subscribe' };
      for (const key of FILTER_KEYS) {
        if (this._filters[key].length) msg[key] = this._filters[key].slice();
      }
      msg.since = this._lastSeq;
      try {
        this._ws.send(JSON.stringify(msg));
      } catch (err) {
        this._emitError({ type: 'send', message: String(err && err.message || err), error: err });
      }
    }

    /** Forget the current socket (its late callbacks are ignored) and close it if asked. */
    _dropSocket(code, reason) {
      const ws = this._ws;
      this._ws = null;
      this._wsSubscribed = false;
      this._clearTimer('watchdog');
      this._clearTimer('stable');
      if (ws && code !== undefined) {
        try { ws.close(code, reason); } catch (err) { /* already closed */ }
      }
    }

    _armWatchdog() {
      this._setTimer('watchdog', this._o.heartbeatTimeoutMs, () => {
        const wasSubscribed = this._wsSubscribed;
        this._dropSocket(CLOSE_WATCHDOG, 'heartbeat timeout');
        this._emitError({ type: 'timeout', message: 'no message for ' + this._o.heartbeatTimeoutMs + ' ms' });
        this._afterClose(null, 'heartbeat timeout', wasSubscribed);
      });
    }

    _afterClose(code, reason, wasSubscribed) {
      if (!this._running) return;
      if (code === CLOSE_AUTH) {
        this._emitError({ type: 'auth', code: code, message: reason || 'authentication failed' });
        this._halt();
        return;
      }
      if (this._mode === 'poll') {
        this._scheduleProbe(); // a probe failed; polling carries on
        return;
      }
      if (code === CLOSE_TRY_AGAIN) {
        // Busy, not broken: come back when the server says (plus jitter); no fallback count.
        // (A refusal by HTTP 503 + Retry-After is invisible to a page: it is a close 1006
        // before open, a failed connect like any other.)
        this.stats.refusals++;
        const retryAfter = retryAfterFromReason(reason);
        this._scheduleReconnect(retryDelay(this._attempt++,
          retryAfter === null ? DEFAULT_RETRY_AFTER_MS : retryAfter, this._o, this._random));
        return;
      }
      if (code === CLOSE_TOO_SLOW) {
        // Resume at once with since; only a repeat without a stable period in between backs off.
        const delay = this._slowCloses++ === 0 ? 0 : this._backoff(this._attempt++);
        this._scheduleReconnect(delay);
        return;
      }
      if (!wasSubscribed) {
        this._failures++;
        const n = this._o.fallbackAfter;
        if (n > 0 && this._failures >= n && this._canPoll()) {
          this._fallbackNotice(this._failures + ' WebSocket connects failed');
          this._enterPolling();
          return;
        }
      }
      this._scheduleReconnect(this._backoff(this._attempt++));
    }

    _scheduleReconnect(delay) {
      this.stats.reconnects++;
      this._setStatus(STATUS.RECONNECTING, { delayMs: delay });
      this._setTimer('reconnect', delay, () => this._connect());
    }

    _backoff(attempt) {
      return backoffDelay(attempt, this._o, this._random);
    }

    _onWsMessage(raw) {
      let msg;
      try {
        msg = JSON.parse(raw);
      } catch (err) {
        this._emitError({ type: 'protocol', message: 'message is not JSON' });
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      switch (msg.type) {
        case 'subscribed':
          this._onSubscribed(msg);
          break;
        case 'event':
          this._onEvent(msg);
          break;
        case 'heartbeat':
          if (this._o.advanceOnTop && this._wsSubscribed) this._advanceTo(msg.top);
          break;
        case 'error':
          this._emitError({ type: 'server', message: msg.message });
          break;
        default:
          break; // unknown messages are ignored, so the server can add some
      }
    }

    _onSubscribed(msg) {
      const first = !this._wsSubscribed;
      this._wsSubscribed = true;
      const wasNull = this._lastSeq === null;
      const reset = this._reconcile(msg.epoch, msg.recovered, msg.position ?? msg.top);
      // Live only (since null): the server streams after `top`; resume from there next time.
      if (!reset && wasNull && this._lastSeq === null && isSeq(msg.top)) this._lastSeq = msg.top;
      if (!this._running) return; // onReset may have stopped us
      if (first) {
        this._failures = 0;
        if (this._mode === 'poll') this._leavePolling(); // a probe got through
        this._mode = 'ws';
        this._setTimer('stable', this._o.stableMs, () => {
          this._attempt = 0;
          this._slowCloses = 0;
        });
      }
      this._setStatus(STATUS.LIVE);
    }

    // ----- events, dedupe, epochs ---------------------------------------------------------

    /**
     * Check the log identity; on a changed epoch or `recovered: false`, move to `top`
     * and tell the page to reload. Returns true if it reset.
     */
    _reconcile(epoch, recovered, top) {
      const previousEpoch = this._epoch;
      const next = epoch === undefined || epoch === null ? null : String(epoch);
      const changed = previousEpoch !== null && next !== null && next !== previousEpoch;
      if (next !== null) this._epoch = next;
      if (!changed && recovered !== false) return false;
      const previousSeq = this._lastSeq;
      this._lastSeq = isSeq(top) ? top : null;
      this.stats.resets++;
      this._call('onReset', {
        reason: changed ? 'epoch_changed' : 'not_recovered',
        epoch: this._epoch,
        previousEpoch: previousEpoch,
        previousSeq: previousSeq,
        top: isSeq(top) ? top : null,
      });
      return true;
    }

    _onEvent(msg) {
      const seq = msg.seq;
      if (!isSeq(seq)) {
        this._emitError({ type: 'protocol', message: 'event without a valid seq' });
        return;
      }
      if (msg.epoch !== undefined && msg.epoch !== null && this._epoch !== null &&
          String(msg.epoch) !== this._epoch) {
        this._reconcile(msg.epoch, true, null); // the log was reset under a live stream
      }
      const last = this._lastSeq;
      if (last !== null && seq <= last) {
        this.stats.duplicates++;
        return;
      }
      if (last !== null && seq > last + 1 && !this._hasFilters()) {
        // Informational: seqs burnt by rolled-back transactions also leave holes.
        this.stats.gaps++;
        this._call('onGap', { after: last, seq: seq, missing: seq - last - 1 });
      }
      this._lastSeq = seq;
      if (this._epoch === null && msg.epoch !== undefined && msg.epoch !== null) {
        this._epoch = String(msg.epoch);
      }
      this.stats.events++;
      const out = {};
      for (const key of Object.keys(msg)) if (key !== 'type') out[key] = msg[key];
      out.epoch = this._epoch;
      this._call('onEvent', out);
    }

    _advanceTo(top) {
      if (isSeq(top) && (this._lastSeq === null || top > this._lastSeq)) this._lastSeq = top;
    }

    _hasFilters() {
      return FILTER_KEYS.some((k) => this._filters[k].length > 0);
    }

    _mergeFilters(filters) {
      for (const key of FILTER_KEYS) {
        if (key in filters) this._filters[key] = toList(filters[key]);
      }
    }

    // ----- REST long polling --------------------------------------------------------------

    _canPoll() {
      return Boolean(this._fetch && this._o.pollUrl);
    }

    _enterPolling() {
      if (this._ws) this._dropSocket(1000, 'falling back to polling');
      this._clearTimer('reconnect');
      this._mode = 'poll';
      this._pollAttempt = 0;
      this._pollNow();
      if (this._WS && this._wsUrl()) this._scheduleProbe();
    }

    _leavePolling() {
      this._disownPoll();
      this._clearTimer('poll');
      this._clearTimer('probe');
    }

    _scheduleProbe() {
      this._setTimer('probe', this._o.wsRetryMs, () => {
        if (this._running && this._mode === 'poll' && !this._ws) this._connect();
      });
    }

    _pollRequestUrl() {
      const params = [];
      if (this._lastSeq !== null) params.push('since=' + this._lastSeq);
      params.push('wait=' + encodeURIComponent(this._o.pollWait));
      for (const key of FILTER_KEYS) {
        const list = this._filters[key];
        if (list.length) params.push(key + '=' + list.map(encodeURIComponent).join(','));
      }
      const base = this._absolutePollUrl();
      return base + (base.indexOf('?') === -1 ? '?' : '&') + params.join('&');
    }

    /** pollUrl made absolute against baseUrl; relative pollUrls stay relative in a browser. */
    _absolutePollUrl() {
      const url = this._o.pollUrl;
      if (/^https?:\/\//i.test(url) || !this._o.baseUrl) return url;
      const loc = this._origin();
      if (url.startsWith('//')) return loc.protocol + url;
      return loc.protocol + '//' + loc.host + (url.startsWith('/') ? '' : '/') + url;
    }

    /** Ignore whatever the in-flight poll brings back, and abort it. */
    _disownPoll() {
      this._pollGen++;
      this._clearTimer('pollTimeout');
      const ctrl = this._pollAbort;
      this._pollAbort = null;
      if (ctrl) {
        try { ctrl.abort(); } catch (err) { /* ignore */ }
      }
    }

    _pollNow() {
      this._clearTimer('poll');
      if (!this._running || this._mode !== 'poll') return;
      this._disownPoll();
      const gen = this._pollGen;
      const ctrl = this._Abort ? new this._Abort() : null;
      this._pollAbort = ctrl;
      const headers = { Accept: 'application/json' };
      if (this._o.token) headers.Authorization = 'Token ' + this._o.token;
      const init = { method: 'GET', headers: headers, credentials: 'same-origin', cache: 'no-store' };
      if (ctrl) init.signal = ctrl.signal;
      const started = this._now();

      this._setTimer('pollTimeout', this._o.pollTimeoutMs, () => {
        if (gen !== this._pollGen) return;
        this._disownPoll();
        this._pollFailed({ type: 'timeout', message: 'poll got no answer in ' + this._o.pollTimeoutMs + ' ms' });
      });

      let request;
      try {
        request = Promise.resolve(this._fetch(this._pollRequestUrl(), init));
      } catch (err) {
        request = Promise.reject(err);
      }
      request
        .then((resp) => {
          if (gen !== this._pollGen) return null;
          if (resp.status === 401 || resp.status === 403) {
            this._emitError({ type: 'auth', status: resp.status, message: 'poll refused: HTTP ' + resp.status });
            this._halt();
            return null;
          }
          if (!resp.ok) throw new Error('poll failed: HTTP ' + resp.status);
          return resp.json().then((body) => {
            if (gen !== this._pollGen) return;
            this._clearTimer('pollTimeout');
            this._pollAbort = null;
            this._onPollAnswer(body, started, gen);
          });
        })
        .catch((err) => {
          if (gen !== this._pollGen) return;
          this._clearTimer('pollTimeout');
          this._pollAbort = null;
          this._pollFailed({ type: 'poll', message: String(err && err.message || err), error: err });
        });
    }

    _onPollAnswer(body, started, gen) {
      if (!body || typeof body !== 'object' || !Array.isArray(body.results)) {
        throw new Error('malformed poll answer');
      }
      const wasNull = this._lastSeq === null;
      const reset = this._reconcile(body.epoch, body.recovered, body.position ?? body.top);
      const results = body.results.slice().sort((a, b) => (a && b ? a.seq - b.seq : 0));
      for (const ev of results) {
        if (ev && typeof ev === 'object') this._onEvent(ev);
      }
      if (this._o.advanceOnTop || (wasNull && !reset && results.length === 0)) {
        this._advanceTo(body.top);
      }
      // A callback may have stopped us, changed the filters, or a probe may have won.
      if (!this._running || this._mode !== 'poll' || gen !== this._pollGen) return;
      this._pollAttempt = 0;
      this._setStatus(STATUS.POLLING);
      const delay = results.length
        ? 0
        : Math.max(0, this._o.pollMinIntervalMs - (this._now() - started));
      this._setTimer('poll', delay, () => this._pollNow());
    }

    _pollFailed(info) {
      if (!this._running || this._mode !== 'poll') return;
      this._emitError(info);
      const delay = this._backoff(this._pollAttempt++);
      this._setStatus(STATUS.RECONNECTING, { delayMs: delay });
      this._setTimer('poll', delay, () => this._pollNow());
    }

    // ----- plumbing -----------------------------------------------------------------------

    _halt() {
      this._running = false;
      if (this._ws) this._dropSocket(1000, 'client stopped');
      this._disownPoll();
      for (const name of Object.keys(this._timers)) this._clearTimer(name);
      this._mode = null;
      this._setStatus(STATUS.STOPPED);
    }

    _setTimer(name, ms, fn) {
      this._clearTimer(name);
      this._timers[name] = this._setTimeout(() => {
        delete this._timers[name];
        fn();
      }, ms);
    }

    _clearTimer(name) {
      if (this._timers[name] !== undefined) {
        this._clearTimeout(this._timers[name]);
        delete this._timers[name];
      }
    }

    _setStatus(status, info) {
      if (status === this._status) return;
      this._status = status;
      this._call('onStatus', status, Object.assign({ mode: this._mode }, info || {}));
    }

    _emitError(info) {
      this._call('onError', info);
    }

    /** Say once per client why it polls instead of using the WebSocket. */
    _fallbackNotice(reason) {
      const message = 'KnowledgeSocket: falling back to REST long polling: ' + reason;
      this._emitError({ type: 'fallback', message: message });
      if (this._warned) return;
      this._warned = true;
      if (this._o.warn && typeof console !== 'undefined' && console.warn) console.warn(message);
    }

    /** Call a page callback; a throwing callback must not break the stream. */
    _call(name, ...args) {
      const fn = this._o[name];
      if (typeof fn !== 'function') return;
      try {
        fn.apply(this, args);
      } catch (err) {
        if (name !== 'onError') {
          this._call('onError', { type: 'callback', callback: name, message: String(err && err.message || err), error: err });
        } else if (typeof console !== 'undefined') {
          console.error('KnowledgeSocket onError callback threw', err);
        }
      }
    }
  }

  KnowledgeSocket.STATUS = STATUS;
  KnowledgeSocket.DEFAULTS = DEFAULTS;
  KnowledgeSocket.backoffDelay = backoffDelay;
  KnowledgeSocket.retryDelay = retryDelay;
  return KnowledgeSocket;
});
