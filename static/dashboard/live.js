/* The dashboard's live feed page: KnowledgeSocket + a table, newest first. */
(function () {
  'use strict';
  const list = document.getElementById('feed');
  const badge = document.getElementById('feed-status');
  const form = document.getElementById('feed-filters');
  const position = document.getElementById('feed-position');
  const count = document.getElementById('feed-count');
  const MAX_ROWS = 500;
  let shown = 0;

  function cell(text) {
    const td = document.createElement('td');
    td.textContent = text === undefined || text === null ? '' : String(text);
    return td;
  }

  function addRow(ev) {
    const data = ev.data || {};
    const item = data.item || {};
    const tr = document.createElement('tr');
    tr.dataset.seq = ev.seq;
    tr.dataset.event = ev.event;
    tr.append(
      cell(ev.seq), cell(ev.event),
      cell(item.knowledge_type || data.knowledge_type),
      cell(item.source || data.source || data.validator),
      cell(item.subject || data.subject || ''),
      cell(ev.created_at ? new Date(ev.created_at).toISOString().slice(0, 19).replace('T', ' ') + ' UTC' : ''),
    );
    list.prepend(tr);
    while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
    count.textContent = String(++shown);
    position.textContent = String(ev.seq);
  }

  function readFilters() {
    const events = Array.from(form.querySelectorAll('input[name=events]:checked')).map((i) => i.value);
    const types = Array.from(form.querySelector('select[name=types]').selectedOptions).map((o) => o.value);
    const sources = form.querySelector('input[name=sources]').value.split(',')
      .map((s) => s.trim()).filter(Boolean);
    return { events, types, sources };
  }

  const ks = new KnowledgeSocket({
    since: Number(list.dataset.since),
    epoch: list.dataset.epoch,
    filters: readFilters(),
    onEvent: addRow,
    onStatus(status) {
      badge.textContent = status;
      badge.dataset.status = status;
      badge.className = 'badge ' + ({ live: 'ok', polling: 'warn', reconnecting: 'warn', stopped: 'bad' }[status] || '');
    },
    onReset(info) {
      const tr = document.createElement('tr');
      tr.className = 'reset';
      const td = cell('The log could not fill a gap (' + info.reason + '); continuing from ' + info.top + '.');
      td.colSpan = 6;
      tr.append(td);
      list.prepend(tr);
    },
    onError(err) {
      if (err.type === 'auth') badge.textContent = 'signed out';
    },
  });
  window.liveFeed = ks;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ks.setFilters(readFilters());
  });
  ks.start();
})();
