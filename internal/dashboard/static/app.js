// Spread dashboard: draws the state the frontend streams on /events.
// Every string from the server (pod names, errors, targets) goes into the page through
// textContent or setAttribute, never innerHTML: a pod called "<script>" shows as text.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---- event stream, with reconnection --------------------------------------------------
  let es = null;
  let lastMessage = 0;
  let reopenTimer = null;

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function connect() {
    clearTimeout(reopenTimer);
    if (es) es.close();
    es = new EventSource('/events');
    es.onopen = () => setConn('live', 'live');
    es.onmessage = (ev) => {
      lastMessage = Date.now();
      let st;
      try { st = JSON.parse(ev.data); } catch (e) { return; }
      setConn('live', 'live');
      render(st);
    };
    es.onerror = () => {
      setConn('reconnecting', 'reconnecting…');
      // EventSource retries by itself after a dropped stream (the server asks for 1 s), but
      // gives up for good on an HTTP error (a 503 while the frontend restarts): reopen then.
      if (es.readyState === EventSource.CLOSED) {
        reopenTimer = setTimeout(connect, 2000);
      }
    };
  }

  // A stream that silently stopped delivering (a half-open connection) is reopened too.
  setInterval(() => {
    if (lastMessage && Date.now() - lastMessage > 5000) {
      lastMessage = 0;
      setConn('reconnecting', 'reconnecting…');
      connect();
    }
  }, 1000);

  // ---- controls ---------------------------------------------------------------------------
  let replicas = 0;

  async function post(method, url) {
    const msg = $('message');
    msg.className = 'message';
    msg.textContent = method + ' ' + url + ' …';
    try {
      const resp = await fetch(url, { method: method, headers: { 'Accept': 'application/json' } });
      let body = {};
      try { body = await resp.json(); } catch (e) { /* empty body */ }
      if (!resp.ok) {
        msg.className = 'message error';
        msg.textContent = (body && body.error) ? String(body.error) : resp.status + ' ' + resp.statusText;
        return null;
      }
      msg.textContent = 'done: ' + method + ' ' + url;
      return body;
    } catch (e) {
      msg.className = 'message error';
      msg.textContent = String(e);
      return null;
    }
  }

  function podAction(pod, action) {
    return post('POST', '/cluster/pods/' + encodeURIComponent(pod) + '/' + action);
  }

  function wireControls() {
    $('scale-up').addEventListener('click', () => post('POST', '/cluster/scale?replicas=' + (replicas + 1)));
    $('scale-down').addEventListener('click', () => post('POST', '/cluster/scale?replicas=' + Math.max(0, replicas - 1)));
    $('rollout').addEventListener('click', () => post('POST', '/cluster/rollout'));
    $('kill-random').addEventListener('click', () => podAction('random', 'kill'));
    $('freeze-random').addEventListener('click', () => podAction('random', 'freeze'));
  }

  function startLoad(mode) {
    const rate = $('rate').value;
    const dur = $('duration').value;
    return post('POST', '/dashboard/load/' + encodeURIComponent(mode) +
      '?rate=' + encodeURIComponent(rate) + '&duration=' + encodeURIComponent(dur));
  }

  function stopLoad(mode) {
    return post('DELETE', '/dashboard/load/' + encodeURIComponent(mode));
  }

  // ---- rendering --------------------------------------------------------------------------
  const panels = new Map(); // mode name -> panel

  function modePanel(m) {
    let p = panels.get(m.name);
    if (p) return p;
    const sec = el('section', 'mode');
    sec.dataset.mode = m.name;
    const head = el('div', 'head');
    const h = el('h2', 'name', m.name);
    const policy = el('span', 'policy');
    const connstate = el('span', 'connstate');
    const try10 = el('a', 'try', 'try 10 calls');
    try10.href = '/call/' + encodeURIComponent(m.name) + '?n=10';
    head.append(h, policy, connstate, try10);
    const desc = el('p', 'desc');
    const load = el('div', 'load');
    const start = el('button', 'start primary', 'Start load');
    start.type = 'button';
    start.addEventListener('click', () => startLoad(m.name));
    const stop = el('button', 'stop', 'Stop');
    stop.type = 'button';
    stop.addEventListener('click', () => stopLoad(m.name));
    const loadStatus = el('span', 'load-status muted');
    load.append(start, stop, loadStatus);
    const summary = el('div', 'summary');
    const calls = el('b', 'calls', '0');
    const errors = el('b', 'errors', '0');
    const answering = el('b', 'answering', '0');
    const answeringLabel = document.createTextNode(' pods answering, ');
    summary.append(calls, document.createTextNode(' calls, '), answering, answeringLabel,
      errors, document.createTextNode(' errors'));
    const lasterr = el('div', 'lasterr');
    const rows = el('div', 'rows');
    sec.append(head, desc, load, summary, lasterr, rows);
    $('modes').append(sec);
    p = { sec, policy, connstate, desc, load, loadStatus, calls, errors, answering, answeringLabel, lasterr, rows, pods: new Map() };
    panels.set(m.name, p);
    return p;
  }

  function podRow(p, name) {
    let r = p.pods.get(name);
    if (r) return r;
    const row = el('div', 'pod');
    row.dataset.pod = name;
    const label = el('div', 'label');
    const nm = el('span', 'name', name);
    nm.title = name;
    const badges = el('span', 'badges');
    label.append(nm, badges);
    const bar = el('div', 'bar');
    const fill = el('div', 'fill');
    bar.append(fill);
    const spark = document.createElementNS(SVG, 'svg');
    spark.setAttribute('viewBox', '0 0 100 20');
    spark.setAttribute('preserveAspectRatio', 'none');
    const line = document.createElementNS(SVG, 'polyline');
    spark.append(line);
    const count = el('span', 'count', '0');
    row.append(label, bar, count, spark);
    r = { row, badges, fill, line, count, badgeKey: '' };
    p.pods.set(name, r);
    return r;
  }

  function setBadges(r, b) {
    const list = [b.state];
    if (b.new) list.push('new');
    if (b.frozen) list.push('frozen');
    if (b.delay) list.push('slow ' + b.delay);
    const key = list.join('|');
    if (key === r.badgeKey) return;
    r.badgeKey = key;
    r.badges.replaceChildren(...list.map((t) => el('span', 'badge ' + t.split(' ')[0], t)));
  }

  function renderMode(m) {
    const p = modePanel(m);
    p.policy.textContent = m.policy || 'resolver policy';
    p.connstate.textContent = m.state;
    p.desc.textContent = m.description || m.target;
    p.desc.title = m.target;
    p.calls.textContent = String(m.calls);
    p.errors.textContent = String(m.errors);
    p.lasterr.textContent = m.last_error ? 'last error: ' + m.last_error : '';
    p.loadStatus.textContent = m.load
      ? 'load ' + m.load.rate + '/s, ' + Math.ceil(m.load.left_s) + ' s left'
      : 'no load';
    p.sec.dataset.load = m.load ? '1' : '0';
    const total = m.calls || 0;
    let answering = 0;
    const keep = new Set();
    const order = [];
    for (const b of m.pods) {
      keep.add(b.pod);
      const r = podRow(p, b.pod);
      order.push(r.row);
      if (b.calls > 0) answering++;
      r.row.dataset.calls = String(b.calls);
      r.row.dataset.active = b.calls > 0 ? '1' : '0';
      r.row.dataset.state = b.state;
      r.row.dataset.new = b.new ? '1' : '0';
      setBadges(r, b);
      r.fill.style.width = total > 0 ? (100 * b.calls / total).toFixed(1) + '%' : '0';
      r.count.textContent = total > 0 ? b.calls + ' · ' + Math.round(100 * b.calls / total) + '%' : '0';
      const ps = b.per_second || [];
      const peak = Math.max(1, ...ps);
      r.line.setAttribute('points', ps.map((v, i) =>
        (ps.length > 1 ? (100 * i / (ps.length - 1)) : 0).toFixed(1) + ',' + (19 - 18 * v / peak).toFixed(1)).join(' '));
    }
    for (const [name, r] of p.pods) {
      if (!keep.has(name)) { r.row.remove(); p.pods.delete(name); }
    }
    // Keep the server's order (the cluster's pods, then the ones seen but gone).
    order.forEach((row, i) => { if (p.rows.children[i] !== row) p.rows.insertBefore(row, p.rows.children[i] || null); });
    p.answering.textContent = String(answering);
    p.answeringLabel.textContent = answering === 1 ? ' pod answering, ' : ' pods answering, ';
    p.sec.dataset.answering = String(answering);
  }

  function renderPods(cluster) {
    const tbody = $('pods').tBodies[0];
    const rows = cluster.pods.map((pod) => {
      const tr = el('tr');
      tr.dataset.pod = pod.name;
      const state = [pod.phase];
      if (pod.frozen) state.push('frozen');
      if (pod.delay) state.push('slow ' + pod.delay);
      const actions = el('td');
      for (const a of ['kill', 'delete', pod.frozen ? 'thaw' : 'freeze']) {
        const b = el('button', a, a);
        b.type = 'button';
        b.addEventListener('click', () => podAction(pod.name, a));
        actions.append(b);
      }
      tr.append(el('td', 'name', pod.name), el('td', 'state', state.join(', ')),
        el('td', '', pod.address || ''), el('td', '', pod.zone || ''),
        el('td', 'conns', ''), el('td', 'served', ''), actions);
      return tr;
    });
    tbody.replaceChildren(...rows);
  }

  // The counts change every event: set them in place (the rows are rebuilt only on changes
  // of the pods themselves).
  function renderPodCounts(cluster) {
    const byName = new Map(cluster.pods.map((p) => [p.name, p]));
    for (const tr of $('pods').tBodies[0].rows) {
      const pod = byName.get(tr.dataset.pod);
      if (!pod) continue;
      tr.dataset.conns = String(pod.conns || 0);
      tr.querySelector('.conns').textContent = String(pod.conns || 0);
      tr.querySelector('.served').textContent = String(pod.calls_served || 0);
    }
  }

  let podsKey = '';

  function render(st) {
    $('frontend').textContent = st.frontend;
    $('instance').textContent = st.instance;
    document.body.dataset.instance = st.instance;
    $('window').textContent = String(st.window_s);
    document.body.dataset.controls = st.controls ? '1' : '0';
    $('controls').hidden = !st.controls;
    $('pods-panel').hidden = !st.cluster;
    const names = new Set();
    for (const m of st.modes) {
      names.add(m.name);
      renderMode(m);
      panels.get(m.name).load.hidden = !st.controls;
    }
    for (const [name, p] of panels) {
      if (!names.has(name)) { p.sec.remove(); panels.delete(name); }
    }
    if (st.cluster) {
      replicas = st.cluster.replicas;
      $('replicas').textContent = String(replicas);
      // Rebuild the pod table only when it changed, so a button is not replaced under the pointer.
      const key = JSON.stringify(st.cluster.pods.map((p) => [p.name, p.phase, p.frozen, p.delay]));
      if (key !== podsKey) { podsKey = key; renderPods(st.cluster); }
      renderPodCounts(st.cluster);
    }
    document.body.dataset.ready = '1';
  }

  wireControls();
  connect();
})();
