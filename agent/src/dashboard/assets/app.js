// The capwise dashboard: no framework, no build step. Data comes from the
// agent's API (same origin, session cookie) and its event stream; every
// string from the agent goes into the page as text, never as HTML.
'use strict';

const view = { torrents: [], why: null, usage: [], networks: [], history: [], peersOf: null };

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return '?';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
}

// A cap as `budget set --cap` takes it back: whole units, else bytes.
function capText(n) {
  for (const [unit, size] of [['TB', 1e12], ['GB', 1e9], ['MB', 1e6], ['kB', 1e3]]) {
    if (n % size === 0) return (n / size) + unit;
  }
  return n + 'B';
}

const rate = (n) => bytes(Math.round(n || 0)) + '/s';

function date(secs) {
  return new Date(secs * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function showError(message) {
  const p = $('#error');
  p.textContent = message || '';
  p.hidden = !message;
}

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    // Expired or revoked: the page becomes the sign-in hint.
    location.reload();
    throw new Error('signed out');
  }
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((value && value.error) || response.statusText);
  return value;
}

async function act(what) {
  try {
    showError('');
    await what();
  } catch (e) {
    showError(e.message);
  }
}

// ---- Now ----

function renderNow() {
  const why = view.why;
  if (!why) return;
  const n = why.network;
  $('#uplink').textContent = n
    ? `'${n.name}' (${n.kind}${n.interface ? ', ' + n.interface : ''}): ` +
      (n.metered ? 'metered' : 'not metered') +
      (n.metered_source ? ` (${n.metered_source})` : '') +
      (n.roaming ? ', roaming' : '') + (why.source ? `; seen through ${why.source}` : '')
    : 'No network' + (why.source ? ` (${why.source})` : '');
  const decision = $('#decision');
  decision.textContent = why.explanation;
  const held = !why.seeding_wan || !why.background_allowed;
  decision.className = 'decision ' + (held ? 'held' : 'free');
  decision.dataset.reason = why.reason;
  const changes = $('#changes');
  changes.replaceChildren();
  const add = (text) => changes.append(el('li', {}, text));
  if (n && n.metered && why.reason === 'Metered') {
    add(`Marking '${n.name}' as not metered (Networks, below) lets uploads to the internet and background torrents go on.`);
  }
  const mine = n && view.usage.find((u) => u.network_id === n.id);
  if (mine && mine.budget) {
    add(`The budget of '${n.name}' resets on ${date(mine.period_end)}.`);
  } else if (n && n.metered) {
    add(`No budget on '${n.name}': set a cap below to let capwise use part of it.`);
  }
  const seen = n && view.networks.find((x) => x.id === n.id);
  for (const w of (seen && seen.schedule) || []) add(`Schedule of '${n.name}': ${w}.`);
  if (!why.counts_against_budget && n) add('Traffic now does not count against the budget (a free window, or no route).');
  for (const w of why.warnings || []) add('Configuration: ' + w);
}

// ---- Budget ----

function budgetBar(b) {
  const width = 480;
  const height = 26;
  const cap = Math.max(b.cap_bytes, 1);
  const x = (v) => Math.max(0, Math.min(width, (v / cap) * width));
  const root = svg('svg', { viewBox: `0 0 ${width} ${height + 16}`, width: width, height: height + 16, role: 'img', class: 'budget-bar' });
  root.append(svg('rect', { x: 0, y: 0, width: width, height: height, fill: '#eef1f4', stroke: '#c5ccd3' }));
  // The reserve: the part of the cap capwise never touches.
  root.append(svg('rect', { x: x(b.agent_limit_bytes), y: 0, width: width - x(b.agent_limit_bytes), height: height, fill: '#f6e2c8' }));
  const agent = Math.min(b.agent_used_bytes, cap);
  const others = Math.min(b.others_used_bytes, Math.max(cap - agent, 0));
  root.append(svg('rect', { x: 0, y: 2, width: x(agent), height: height - 4, fill: '#1f6feb', class: 'agent-used' }));
  root.append(svg('rect', { x: x(agent), y: 2, width: x(others), height: height - 4, fill: '#8a96a3', class: 'others-used' }));
  root.append(svg('line', { x1: x(b.agent_limit_bytes), x2: x(b.agent_limit_bytes), y1: 0, y2: height + 4, stroke: '#b35900', 'stroke-width': 2 }));
  const right = x(b.agent_limit_bytes) > width / 2;
  const label = svg('text', { x: x(b.agent_limit_bytes), y: height + 14, 'text-anchor': right ? 'end' : 'start' });
  label.textContent = 'capwise stops at ' + bytes(b.agent_limit_bytes);
  root.append(label);
  const title = svg('title', {});
  title.textContent = `capwise ${bytes(b.agent_used_bytes)}, other programs ${bytes(b.others_used_bytes)}, of ${bytes(b.cap_bytes)}`;
  root.append(title);
  return root;
}

// The period as a plot: use so far (a straight line from the start: the
// ledger keeps a period's total, not its course) and the agent's linear
// projection to the reset, against the cap and capwise's limit.
function budgetPlot(u) {
  const b = u.budget;
  const p = b.projection;
  const width = 480;
  const height = 150;
  const left = 4;
  const top = 14;
  const plotH = height - top - 18;
  const start = u.period_start;
  const end = u.period_end;
  const now = Math.min(Math.max(Date.now() / 1000, start), end);
  const peak = Math.max(b.cap_bytes, b.used_bytes, p ? p.end_bytes : 0, 1);
  const x = (t) => left + ((t - start) / Math.max(end - start, 1)) * (width - 2 * left);
  const y = (v) => top + plotH - (Math.min(v, peak) / peak) * plotH;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: width, height: height, role: 'img', class: 'budget-plot' });
  root.append(svg('rect', { x: left, y: top, width: width - 2 * left, height: plotH, fill: '#f7f9fb', stroke: '#d7dce1' }));
  const level = (v, color, text, cls, dash) => {
    root.append(svg('line', { x1: left, x2: width - left, y1: y(v), y2: y(v), stroke: color, 'stroke-dasharray': dash || '', class: cls }));
    const label = svg('text', { x: width - left - 2, y: y(v) - 3, 'text-anchor': 'end' });
    label.textContent = text;
    root.append(label);
  };
  level(b.cap_bytes, '#b00020', 'cap ' + bytes(b.cap_bytes), 'cap-line');
  level(b.agent_limit_bytes, '#b35900', 'capwise stops at ' + bytes(b.agent_limit_bytes), 'limit-line', '4 3');
  const line = (from, to, color, cls, dash) => root.append(svg('line', {
    x1: x(from[0]), y1: y(from[1]), x2: x(to[0]), y2: y(to[1]),
    stroke: color, 'stroke-width': 2, 'stroke-dasharray': dash || '', class: cls,
  }));
  line([start, 0], [now, b.used_bytes], '#55606b', 'used-line');
  line([start, 0], [now, b.agent_used_bytes], '#1f6feb', 'agent-line');
  if (p) {
    line([now, b.used_bytes], [end, p.end_bytes], '#55606b', 'projection-line', '6 4');
    line([now, b.agent_used_bytes], [end, p.agent_end_bytes], '#1f6feb', 'agent-projection-line', '6 4');
  }
  root.append(svg('line', { x1: x(now), x2: x(now), y1: top, y2: top + plotH, stroke: '#9aa4ae', 'stroke-dasharray': '2 3' }));
  const axis = (t, anchor, text) => {
    const label = svg('text', { x: x(t), y: height - 4, 'text-anchor': anchor });
    label.textContent = text;
    root.append(label);
  };
  axis(start, 'start', date(start));
  axis(end, 'end', date(end));
  const title = svg('title', {});
  title.textContent = 'Grey: the whole link; blue: capwise. Solid: so far; dashed: projected.';
  root.append(title);
  return root;
}

function projectionText(u) {
  const b = u.budget;
  const p = b.projection;
  if (!p) return 'No projection yet: less than an hour of the period has passed.';
  let text = `Projected by the reset: ${bytes(p.end_bytes)} on the whole link, ${bytes(p.agent_end_bytes)} by capwise ` +
    '(linear: the average rate since the period began, continued to its end).';
  if (p.reaches_cap_at) text += ` At this rate the link reaches the cap on ${date(p.reaches_cap_at)}.`;
  if (p.agent_reaches_limit_at) text += ` capwise would reach its limit on ${date(p.agent_reaches_limit_at)} and then stop.`;
  return text;
}

function renderBudget() {
  const box = $('#budgets');
  box.replaceChildren();
  const names = new Map(view.networks.map((n) => [n.id, n.name || n.id]));
  const current = view.why && view.why.network ? view.why.network.id : null;
  const reports = [...view.usage].sort((a, b) => (b.network_id === current) - (a.network_id === current));
  if (reports.length === 0) box.append(el('p', { class: 'muted' }, 'Nothing recorded yet.'));
  for (const u of reports) {
    const name = names.get(u.network_id) || u.network_id;
    const a = u.agent;
    const agentTotal = a.down_wan + a.up_wan;
    const card = el('div', { class: 'budget', 'data-network': u.network_id });
    card.append(el('h3', {}, name + (u.network_id === current ? ' (now)' : '')));
    if (u.budget) {
      const b = u.budget;
      card.append(el('p', {}, `${bytes(b.used_bytes)} of ${bytes(b.cap_bytes)} used this period; ` +
        `capwise ${bytes(b.agent_used_bytes)}, other programs ${bytes(b.others_used_bytes)}; ` +
        `${bytes(b.available_bytes)} left for capwise, ${bytes(b.cap_bytes - b.agent_limit_bytes)} kept in reserve for you.`));
      card.append(budgetBar(b));
      card.append(budgetPlot(u));
      card.append(el('p', { class: 'projection' }, projectionText(u)));
    } else {
      card.append(el('p', { class: 'muted' }, 'No budget on this network.'));
    }
    const link = u.link ? `the whole link: down ${bytes(u.link.down)}, up ${bytes(u.link.up)}` : 'the whole link: not read yet';
    card.append(el('p', { class: 'muted' },
      `Since ${date(u.period_start)}: capwise with internet peers ${bytes(agentTotal)} ` +
      `(down ${bytes(a.down_wan)}, up ${bytes(a.up_wan)}; LAN ${bytes(a.down_lan + a.up_lan)}); ${link}.`));
    box.append(card);
  }
}

// ---- History ----

// Per network, a bar per period from the ledger (one total per period):
// capwise's internet traffic (blue) within the whole link's (grey), and
// capwise's LAN traffic (light, on top: it crosses no carrier's meter).
function historyPlot(h) {
  const width = 480;
  const height = 130;
  const top = 16;
  const plotH = height - top - 18;
  const periods = h.periods;
  const wan = (p) => p.agent.down_wan + p.agent.up_wan;
  const lan = (p) => p.agent.down_lan + p.agent.up_lan;
  const link = (p) => Math.max(p.link.down + p.link.up, wan(p));
  const peak = Math.max(1, ...periods.map((p) => link(p) + lan(p)));
  const slot = width / Math.max(periods.length, 1);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: width, height: height, role: 'img', class: 'history-plot' });
  const scale = svg('text', { x: 2, y: 11 });
  scale.textContent = 'top: ' + bytes(peak);
  root.append(scale);
  root.append(svg('line', { x1: 0, x2: width, y1: top + plotH, y2: top + plotH, stroke: '#c5ccd3' }));
  periods.forEach((p, i) => {
    const hl = (link(p) / peak) * plotH;
    const hw = (wan(p) / peak) * plotH;
    const hn = (lan(p) / peak) * plotH;
    const x = i * slot + slot * 0.15;
    const w = Math.min(slot * 0.7, 60);
    root.append(svg('rect', { x: x, y: top + plotH - hl, width: w, height: hl, fill: '#c5ccd3', class: 'link-bar' }));
    root.append(svg('rect', { x: x, y: top + plotH - hw, width: w, height: hw, fill: '#1f6feb', class: 'agent-bar' }));
    root.append(svg('rect', { x: x, y: top + plotH - hl - hn, width: w, height: hn, fill: '#a9c8f5', class: 'lan-bar' }));
    const label = svg('text', { x: x + w / 2, y: height - 4, 'text-anchor': 'middle' });
    label.textContent = new Date(p.period_start * 1000).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
    root.append(label);
    const title = svg('title', {});
    title.textContent = `from ${date(p.period_start)}: capwise ${bytes(wan(p))} with internet peers, ` +
      `${bytes(lan(p))} on the LAN; the whole link ${bytes(p.link.down + p.link.up)}`;
    root.append(title);
  });
  return root;
}

// Per network, a bar per local day that had any use: capwise's internet
// traffic (blue) with its LAN traffic on top (light). The link's own
// counters are kept per period only, so they are not drawn here.
function dayPlot(h) {
  const width = 480;
  const height = 110;
  const top = 16;
  const plotH = height - top - 18;
  const days = h.days || [];
  const wan = (d) => d.agent.down_wan + d.agent.up_wan;
  const lan = (d) => d.agent.down_lan + d.agent.up_lan;
  const peak = Math.max(1, ...days.map((d) => wan(d) + lan(d)));
  const slot = width / Math.max(days.length, 1);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: width, height: height, role: 'img', class: 'day-plot' });
  const scale = svg('text', { x: 2, y: 11 });
  scale.textContent = 'per day, top: ' + bytes(peak);
  root.append(scale);
  root.append(svg('line', { x1: 0, x2: width, y1: top + plotH, y2: top + plotH, stroke: '#c5ccd3' }));
  days.forEach((d, i) => {
    const hw = (wan(d) / peak) * plotH;
    const hn = (lan(d) / peak) * plotH;
    const x = i * slot + slot * 0.15;
    const w = Math.min(slot * 0.7, 30);
    root.append(svg('rect', { x: x, y: top + plotH - hw, width: w, height: hw, fill: '#1f6feb', class: 'day-bar' }));
    root.append(svg('rect', { x: x, y: top + plotH - hw - hn, width: w, height: hn, fill: '#a9c8f5', class: 'day-lan-bar' }));
    if (days.length <= 16 || i % Math.ceil(days.length / 16) === 0) {
      const label = svg('text', { x: x + w / 2, y: height - 4, 'text-anchor': 'middle' });
      label.textContent = d.day.slice(5);
      root.append(label);
    }
    const title = svg('title', {});
    title.textContent = `${d.day}: capwise ${bytes(wan(d))} with internet peers, ${bytes(lan(d))} on the LAN`;
    root.append(title);
  });
  return root;
}

function renderHistory() {
  const box = $('#histories');
  box.replaceChildren();
  const names = new Map(view.networks.map((n) => [n.id, n.name || n.id]));
  const shown = view.history.filter((h) => h.periods.length > 0);
  if (shown.length === 0) box.append(el('p', { class: 'muted' }, 'Nothing recorded yet.'));
  for (const h of shown) {
    const card = el('div', { class: 'history', 'data-network': h.network_id });
    card.append(el('h3', {}, names.get(h.network_id) || h.network_id));
    card.append(historyPlot(h));
    if ((h.days || []).length > 0) card.append(dayPlot(h));
    box.append(card);
  }
}

async function refreshHistory() {
  view.history = await api('GET', '/v1/history');
  renderHistory();
}

// ---- Torrents ----

function button(label, cls, handler) {
  const b = el('button', { type: 'button', class: cls }, label);
  b.addEventListener('click', () => act(handler));
  return b;
}

// One DOM build per update: rows go into a fragment, the table takes it
// in one replaceChildren (no reflow per row).
function renderTorrents() {
  const rows = $('#torrent-rows');
  const fragment = document.createDocumentFragment();
  $('#no-torrents').hidden = view.torrents.length > 0;
  for (const t of view.torrents) {
    const done = t.total_length > 0 ? t.bytes_have / t.total_length : 0;
    const state = el('td', { class: 'state state-' + t.state.replace(/ /g, '-') }, t.state);
    if (t.reason) state.append(el('span', { class: 'reason' }, t.reason));
    const progress = el('td', { class: 'progress' },
      el('progress', { class: 'bar', max: 1, value: done }), ' ',
      el('span', { class: 'percent' }, (done * 100).toFixed(1) + '%'));
    const base = t.total_length || t.downloaded || 0;
    const ratio = base > 0 ? (t.uploaded / base).toFixed(2) : '–';
    const id = t.id;
    const actions = el('td', { class: 'actions' },
      t.state === 'paused'
        ? button('Resume', 'resume', () => api('POST', `/v1/torrents/${id}/resume`, {}).then(refreshTorrents))
        : button('Pause', 'pause', () => api('POST', `/v1/torrents/${id}/pause`, {}).then(refreshTorrents)),
      ' ',
      // Queued behind others (`[queue]`): let it go first.
      t.state === 'queued'
        ? button('Go first', 'queue-top', () => api('POST', `/v1/torrents/${id}/queue`, { move: 'top' }).then(refreshTorrents))
        : '',
      t.state === 'queued' ? ' ' : '',
      button('Remove', 'remove', async () => {
        if (!confirm(`Remove '${t.name}'? Its data stays on disk.`)) return;
        await api('DELETE', `/v1/torrents/${id}`);
        await refreshTorrents();
      }));
    const peers = el('td', { class: 'num peers' },
      button(String(t.peers), 'show-peers', () => showPeers(id)));
    peers.title = Object.entries(t.peer_sources || {}).filter(([, n]) => n > 0).map(([k, n]) => `${k}: ${n}`).join(', ');
    fragment.append(el('tr', { 'data-id': id, class: 'torrent' },
      el('td', { class: 'name' }, t.name, t.background ? el('span', { class: 'reason' }, 'background') : ''),
      state, progress,
      el('td', { class: 'num down' }, rate(t.download_rate)),
      el('td', { class: 'num up' }, rate(t.upload_rate)),
      peers,
      el('td', { class: 'num ratio' }, ratio),
      actions));
  }
  rows.replaceChildren(fragment);
  if (view.peersOf) act(() => showPeers(view.peersOf));
}

// ---- Peers of one torrent ----

const SOURCE_WORDS = {
  tracker: 'tracker', dht: 'DHT', pex: 'PEX (from another peer)', lsd: 'LSD (local discovery)',
  incoming: 'dialled us', manual: 'named by you',
};

async function showPeers(id) {
  view.peersOf = id;
  const t = view.torrents.find((x) => x.id === id);
  const detail = await api('GET', `/v1/torrents/${id}/peers`);
  if (view.peersOf !== id) return;
  const box = $('#peer-detail');
  box.hidden = false;
  $('#peer-title').textContent = `Peers of '${t ? t.name : id}'`;
  const fragment = document.createDocumentFragment();
  for (const p of detail.peers) {
    fragment.append(el('tr', { class: 'peer', 'data-addr': p.addr },
      el('td', { class: 'addr' }, p.addr),
      el('td', { class: 'source' }, (SOURCE_WORDS[p.source] || p.source) + (p.site_member ? ', site member' : '')),
      el('td', { class: 'transport' }, p.transport.toUpperCase() + (p.encrypted ? ', encrypted' : ', not encrypted')),
      el('td', { class: 'class' }, p.class === 'lan' ? 'LAN' : 'internet')));
  }
  $('#peer-rows').replaceChildren(fragment);
  const w = detail.web_seeds;
  $('#peer-none').hidden = detail.peers.length > 0;
  $('#web-seeds').textContent = w.active + w.dropped > 0
    ? `Web seeds: ${w.active} in use, ${w.dropped} given up; ${bytes(w.bytes)} delivered.`
    : 'No web seeds.';
}

function setUpPeers() {
  $('#peer-close').addEventListener('click', () => {
    view.peersOf = null;
    $('#peer-detail').hidden = true;
  });
}

async function refreshTorrents() {
  view.torrents = await api('GET', '/v1/torrents');
  renderTorrents();
}

function readFileBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(new Error('cannot read ' + file.name));
    reader.readAsDataURL(file);
  });
}

function setUpAdd() {
  $('#add-form').addEventListener('submit', (event) => {
    event.preventDefault();
    act(async () => {
      const magnet = $('#add-magnet').value.trim();
      const file = $('#add-file').files[0];
      const body = { background: $('#add-background').checked };
      if (magnet) body.magnet = magnet;
      else if (file) body.torrent = await readFileBase64(file);
      else throw new Error('Give a magnet link or choose a .torrent file.');
      await api('POST', '/v1/torrents', body);
      $('#add-form').reset();
      await refreshTorrents();
    });
  });
}

// ---- Networks ----

function renderNetworks() {
  const rows = $('#network-rows');
  rows.replaceChildren();
  for (const n of view.networks) {
    const id = n.id;
    const word = el('select', { class: 'metered' },
      el('option', { value: 'auto' }, 'detect'),
      el('option', { value: 'yes' }, 'metered'),
      el('option', { value: 'no' }, 'not metered'));
    word.value = n.metered;
    word.addEventListener('change', () => act(() => editNetwork(id, { metered: word.value })));
    const cap = el('input', { type: 'text', class: 'cap', placeholder: 'e.g. 5GB' });
    cap.value = n.budget ? capText(n.budget.cap_bytes) : '';
    const save = button('Set', 'set-cap', () => editNetwork(id, { cap: cap.value.trim() || 'none' }));
    const state = n.metered_state + (n.metered_source ? ` (${n.metered_source})` : '');
    rows.append(el('tr', { 'data-network': id, class: 'network' },
      el('td', { class: 'name' }, n.name || id, el('span', { class: 'reason' }, id)),
      el('td', {}, n.kind),
      el('td', { class: 'metered-state' }, state),
      el('td', {}, word),
      el('td', {}, cap, ' ', save)));
  }
}

async function editNetwork(id, change) {
  view.networks = await api('PUT', `/v1/networks/${encodeURIComponent(id)}`, change);
  renderNetworks();
  view.why = await api('GET', '/v1/why');
  renderNow();
}

async function refreshNetworks() {
  view.networks = await api('GET', '/v1/networks');
  renderNetworks();
  renderBudget();
  renderNow();
  await refreshHistory();
}

// ---- Live ----

function listen() {
  const events = new EventSource('/v1/events');
  const live = $('#live');
  events.onopen = () => { live.textContent = 'live'; };
  events.onerror = () => {
    live.textContent = 'reconnecting…';
    // A closed stream is not retried by the browser: a refused session.
    if (events.readyState === EventSource.CLOSED) location.reload();
  };
  events.addEventListener('torrents', (e) => { view.torrents = JSON.parse(e.data); renderTorrents(); });
  events.addEventListener('why', (e) => {
    const before = view.why && view.why.network ? view.why.network.id : null;
    view.why = JSON.parse(e.data);
    renderNow();
    const after = view.why.network ? view.why.network.id : null;
    if (before !== after) act(refreshNetworks);
  });
  events.addEventListener('usage', (e) => {
    view.usage = JSON.parse(e.data);
    renderBudget();
    renderNow();
    // The ledger moved: this period's bar of the history too.
    act(refreshHistory);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  setUpAdd();
  setUpPeers();
  $('#signout').addEventListener('click', () => act(async () => {
    await api('POST', '/v1/dashboard/signout', {});
    location.reload();
  }));
  act(refreshNetworks);
  listen();
});
