'use strict';
// pinetd's page: renders the snapshots of /api/v1/stream (docs/web-api.md)
// and lets the page join the chat room over /api/v1/chat.
//
// Everything a student controls reaches the DOM through textContent or text
// nodes only; this file uses no innerHTML at all. Every UI string comes from
// /assets/i18n/<lang>.json through t().

(() => {

const STREAM_URL = '/api/v1/stream';
const CHAT_PATH = '/api/v1/chat';
const LANG_KEY = 'pinetd.lang';
const STALE_MS = 20000;                  // no message for this long: lost
const BACKOFF_MS = [1000, 2000, 4000, 5000];
const CHAT_LOG_MAX = 500;                // lines kept in #chat-log
const LEAVE_MS = 1500;                   // how long the hub has to close after bye
const RATE_POINTS = 150;                 // the most points a sparkline holds
const SVG_NS = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
const hasOwn = (obj, key) => obj != null && Object.prototype.hasOwnProperty.call(obj, key);

// ---------------------------------------------------------------- strings

const i18n = { lang: 'en', strings: {}, fallback: {} };

/** The string `key` in the current language (English if missing, else the
 *  key itself), with `{name}` placeholders filled from `params`. */
function t(key, params) {
  let s = hasOwn(i18n.strings, key) ? i18n.strings[key] : i18n.fallback[key];
  if (typeof s !== 'string') s = key;
  if (!params) return s;
  // One pass: a value containing `{x}` is not expanded again.
  return s.replace(/\{(\w+)\}/g, (m, k) => (hasOwn(params, k) ? String(params[k]) : m));
}

/** t() for a count: the key's `.one` form (if the language has one) for 1. */
function tn(key, n) {
  const one = key + '.one';
  return t(n === 1 && hasOwn(i18n.strings, one) ? one : key, { n: num(n) });
}

function hasString(key) {
  return hasOwn(i18n.strings, key) || hasOwn(i18n.fallback, key);
}

/** `prefix + key` translated if there is such a string, else `key` as given. */
function label(prefix, key) {
  return hasString(prefix + key) ? t(prefix + key) : String(key);
}

function validLang(lang) {
  return typeof lang === 'string' && /^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$/.test(lang);
}

async function fetchStrings(lang) {
  const response = await fetch(`/assets/i18n/${lang}.json`, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`i18n/${lang}.json: HTTP ${response.status}`);
  return response.json();
}

/** Loads `lang` (or its base language, or English) and marks the page with it. */
async function loadLanguage(lang) {
  if (!i18n.fallbackLoaded) {
    i18n.fallbackLoaded = true;
    try { i18n.fallback = await fetchStrings('en'); } catch (e) { console.warn(e); }
  }
  const tries = [lang, lang.split('-')[0]].filter((l, i, all) => l !== 'en' && all.indexOf(l) === i);
  i18n.lang = 'en';
  i18n.strings = i18n.fallback;
  for (const candidate of tries) {
    try {
      i18n.strings = await fetchStrings(candidate);
      i18n.lang = candidate;
      break;
    } catch (e) { console.warn(e); }
  }
  document.documentElement.lang = i18n.lang;
}

/** Fills the elements of index.html that name a string. */
function applyStaticStrings() {
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll('[data-i18n-aria-label]')) node.setAttribute('aria-label', t(node.dataset.i18nAriaLabel));
  updatePauseButton();
  setChatState(chat.state);
}

async function switchLanguage(lang) {
  try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* private mode: not remembered */ }
  await loadLanguage(lang);
  applyStaticStrings();
  rendered.clear();
  if (view.shown) render(view.shown);
}

// ---------------------------------------------------------------- formatting

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function num(n) {
  return typeof n === 'number' ? n.toLocaleString(i18n.lang) : '–';
}

/** Local HH:MM:SS of a Unix time. */
function clockTime(at) {
  if (typeof at !== 'number') return '';
  const d = new Date(at * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** A duration as its two largest units: "3m 10s", "2h 5m". */
function duration(seconds) {
  let left = Math.max(0, Math.floor(Number(seconds) || 0));
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    const count = Math.floor(left / size);
    left -= count * size;
    if (count || parts.length) parts.push(t('unit.' + unit, { n: count }));
  }
  return parts.length ? parts.slice(0, 2).join(' ') : t('unit.s', { n: 0 });
}

function rateText(value) {
  const rounded = Math.round((Number(value) || 0) * 10) / 10;
  return t('rate.now', { n: rounded.toLocaleString(i18n.lang, { maximumFractionDigits: 1 }) });
}

/** The text of a Shown object (or of a plain string, or nothing). */
function shownText(value) {
  if (value == null) return '';
  if (typeof value === 'object') return String(value.text ?? '');
  return String(value);
}

/** The "(cut, N bytes)" and "not UTF-8" markers of a Shown, as spans. */
function shownMarkers(value) {
  const markers = [];
  if (value && typeof value === 'object') {
    if (value.from > 0) markers.push(el('span', 'cut', t('shown.from', { from: num(value.from) })));
    if (value.cut) markers.push(el('span', 'cut', t('shown.cut', { bytes: num(value.bytes) })));
    if (value.invalid_utf8) markers.push(el('span', 'invalid', t('shown.invalid')));
  }
  return markers;
}

/** A Shown as `span.<className>` followed by its markers. */
function shownNodes(value, className) {
  const span = el('span', className);
  if (value && typeof value === 'object' && Number.isInteger(value.mark)) {
    fillMarked(span, shownText(value), value.mark);
  } else {
    span.textContent = shownText(value);
  }
  return [span, ...shownMarkers(value)];
}

/** Puts `text` in `span` with the character at code point `mark` in a
 *  span.mark (an empty, boxed one when the mark is at the end). */
function fillMarked(span, text, mark) {
  const chars = Array.from(text);
  const at = Math.max(0, Math.min(mark, chars.length));
  const end = at + escapeLength(chars, at);
  const marked = el('span', 'mark', chars.slice(at, end).join(''));
  if (at >= chars.length) marked.classList.add('at-end');
  marked.title = t('json.mark_title');
  span.append(chars.slice(0, at).join(''), marked, chars.slice(end).join(''));
}

/** How many code points of a Shown's `chars` from `at` stand for one
 *  character or byte: its escape (`\n`, `\\`, `\xff`, `\u{7}`) whole. */
function escapeLength(chars, at) {
  if (at >= chars.length) return 0;
  if (chars[at] !== '\\') return 1;
  const escape = /^\\(?:x[0-9a-f]{2}|u\{[0-9a-f]{1,6}\}|.)/.exec(chars.slice(at, at + 10).join(''));
  return escape ? escape[0].length : 1;
}

/** The IP of "ip:port" or "[v6]:port". */
function hostOf(peer) {
  const text = shownText(peer);
  const v6 = /^\[(.*)\]:\d+$/.exec(text);
  if (v6) return v6[1];
  const colon = text.lastIndexOf(':');
  return colon > 0 && text.indexOf(':') === colon ? text.slice(0, colon) : text;
}

/** A close or refusal reason, translated where `reason.<words_joined>` exists. */
function reasonText(reason) {
  const text = String(reason);
  const key = 'reason.' + text.replace(/ /g, '_');
  return hasString(key) ? t(key) : text;
}

/** The words for an empty list: `key`, or "… is not enabled" when the
 *  list is empty because its service is off. */
function emptyText(key, service) {
  return view.off.has(service) ? t('service.off', { service: label('service.name.', service) }) : t(key);
}

function emptyNote(key, service) {
  return el('p', 'empty', emptyText(key, service));
}

function emptyRow(columns, key, service) {
  const row = el('tr', 'empty');
  const cell = el('td', null, emptyText(key, service));
  cell.colSpan = columns;
  row.append(cell);
  return row;
}

/** Rebuilds a table's body; each cell carries its column's heading as
 *  data-label, which the phone layout shows beside the value. */
function fillTable(table, rows) {
  const headings = Array.from(table.tHead.rows[0].cells, (th) => th.textContent);
  for (const row of rows) {
    Array.from(row.cells).forEach((td, i) => { if (td.colSpan === 1) td.dataset.label = headings[i] ?? ''; });
  }
  const body = table.tBodies[0];
  keepScroll(table.parentElement, () => body.replaceChildren(...rows));
}

function cell(className, content) {
  const td = el('td', className);
  if (Array.isArray(content)) td.append(...content);
  else if (content != null) td.textContent = content;
  return td;
}

// ---------------------------------------------------------------- scrolling

function atBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 8;
}

/** Rebuilds a scrolling box's content without moving where its reader is. */
function keepScroll(box, rebuild) {
  const top = box.scrollTop;
  rebuild();
  box.scrollTop = top;
}

/** As keepScroll, but a box read at its bottom stays at the bottom. */
function followBottom(box, rebuild) {
  const follow = atBottom(box);
  const top = box.scrollTop;
  rebuild();
  box.scrollTop = follow ? box.scrollHeight : top;
}

// ---------------------------------------------------------------- the clock

// The server's clock as of the newest snapshot, so durations tick between them.
const serverClock = { now: Date.now() / 1000, uptime: null, at: performance.now() };

function serverNow() {
  return serverClock.now + (performance.now() - serverClock.at) / 1000;
}

function setServerClock(status) {
  serverClock.now = typeof status.now === 'number' ? status.now : Date.now() / 1000;
  serverClock.uptime = typeof status.uptime_seconds === 'number' ? status.uptime_seconds : null;
  serverClock.at = performance.now();
}

/** Once a second: the uptime, the "connected for" cells, the stream's health. */
function tick() {
  if (serverClock.uptime != null) {
    $('uptime').textContent = duration(serverClock.uptime + (performance.now() - serverClock.at) / 1000);
  }
  const now = serverNow();
  for (const node of document.querySelectorAll('[data-since]')) {
    node.textContent = duration(now - Number(node.dataset.since));
  }
  for (const node of document.querySelectorAll('[data-until]')) {
    const left = Number(node.dataset.until) - now;
    node.textContent = duration(Math.max(0, left));
    if (left <= 0 && node.dataset.gone) node.closest(node.dataset.gone)?.remove();
  }
  watchStream();
}

// ---------------------------------------------------------------- rendering

const view = { shown: null, latest: null, paused: false, off: new Set() };
const rendered = new Map();   // part name -> the JSON it was drawn from

/** Draws a part of the page only if its data changed since last drawn. */
function renderPart(name, data, draw) {
  const key = JSON.stringify(data ?? null);
  if (rendered.get(name) === key) return;
  rendered.set(name, key);
  draw(data);
}

function render(snapshot) {
  view.shown = snapshot;
  const status = snapshot.status || {};
  const chatData = snapshot.chat || {};
  noteDisabledServices(status.services || []);
  renderPart('header', { host: status.host, version: status.version, languages: status.languages }, drawHeader);
  renderPart('services', status.services || [], drawServices);
  renderPart('room', chatData.room || [], drawRoom);
  renderPart('members', chatData.open || {}, drawMembers);
  renderPart('closed', chatData.closed || {}, drawClosed);
  renderPart('bridge', chatData.bridge ?? null, drawBridge);
  renderPart('json', snapshot.json_echo || {}, drawJson);
  renderPart('udp', snapshot.udp_echo || {}, drawUdp);
  renderPart('discovery', snapshot.discovery || {}, drawDiscovery);
  renderPart('teacher', snapshot.teacher || {}, (data) => teacher()?.draw(data));
  tick();
}

/** Remembers which services are off (their lists are empty for that
 *  reason); when that changes, every part is drawn anew. */
function noteDisabledServices(services) {
  const off = services.filter((s) => !s.enabled).map((s) => s.name);
  if (off.join() !== [...view.off].join()) rendered.clear();
  view.off = new Set(off);
}

// ---- header

function drawHeader({ host, version, languages }) {
  const name = shownText(host) || 'pinetd';
  $('host').textContent = name;
  $('version').textContent = version ? t('header.version', { version }) : '';
  document.title = t('title', { host: name });
  drawLanguageSwitch(Array.isArray(languages) ? languages.filter(validLang) : []);
}

function drawLanguageSwitch(languages) {
  const buttons = languages.map((code) => {
    const button = el('button', 'lang', label('lang.', code));
    button.type = 'button';
    button.id = 'lang-' + code;
    button.lang = code;
    button.setAttribute('aria-pressed', String(code === i18n.lang));
    button.addEventListener('click', () => switchLanguage(code));
    return button;
  });
  $('lang-switch').replaceChildren(...buttons);
}

// ---- services

function drawServices(services) {
  $('service-list').replaceChildren(...services.map(serviceCard));
}

function serviceCard(service) {
  const card = el('article', 'service');
  card.dataset.service = service.name;
  const state = !service.enabled ? 'disabled' : service.running ? 'running' : 'stopped';
  card.classList.add(state);

  const head = el('header', 'service-head');
  const title = el('h3', null, label('service.name.', service.name));
  title.append(el('span', 'code', service.name));
  head.append(title, el('span', 'state ' + state, t('service.state.' + state)));
  card.append(head, listenList(service));
  if (service.enabled) card.append(serviceNumbers(service), rateRow(service.rate), refusalList(service.refused));
  return card;
}

function listenList(service) {
  const list = el('ul', 'listen');
  const addresses = Array.isArray(service.listen) ? service.listen : [];
  for (const address of addresses) {
    const item = el('li', null, shownText(address));
    if (service.transport) item.prepend(el('span', 'transport', String(service.transport).toUpperCase()));
    list.append(item);
  }
  if (!addresses.length) list.append(el('li', 'none', t('service.no_listen')));
  return list;
}

function serviceNumbers(service) {
  const numbers = el('dl', 'numbers');
  const add = (className, term, value) => {
    const box = el('div', className);
    box.append(el('dt', null, term), el('dd', null, value));
    numbers.append(box);
  };
  if (service.max_clients != null) {
    add('clients', t('service.clients'), `${num(service.clients)} / ${num(service.max_clients)}`);
  }
  add('messages', label('messages.', service.messages_name ?? 'messages'), num(service.messages));
  add('errors' + (service.errors > 0 ? ' nonzero' : ''), t('service.errors'), num(service.errors));
  return numbers;
}

function rateRow(rate) {
  const points = (rate && Array.isArray(rate.per_second) ? rate.per_second : []).map((v) => Number(v) || 0);
  const row = el('div', 'rate');
  const seconds = (rate && rate.interval_seconds || 0) * points.length;
  row.append(sparkline(points, seconds), el('span', 'rate-now', rateText(points.length ? points[points.length - 1] : 0)));
  return row;
}

/** An SVG line of `points` (oldest first), right-aligned so a young history
 *  grows from the right edge, scaled to its own peak. */
function sparkline(points, seconds) {
  const width = RATE_POINTS, height = 40;
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const peak = Math.max(0, ...points);
  svg.setAttribute('aria-label', t('rate.chart', { duration: duration(seconds), peak: rateText(peak) }));
  const title = document.createElementNS(SVG_NS, 'title');
  title.textContent = svg.getAttribute('aria-label');
  svg.append(title);

  const step = width / (RATE_POINTS - 1);
  const scale = Math.max(1, peak);
  const xy = points.slice(-RATE_POINTS).map((v, i, all) =>
    [width - (all.length - 1 - i) * step, height - 1 - (v / scale) * (height - 4)]);
  const baseline = document.createElementNS(SVG_NS, 'line');
  setAttributes(baseline, { class: 'baseline', x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5 });
  svg.append(baseline);
  if (xy.length >= 2) {
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
    const area = document.createElementNS(SVG_NS, 'polygon');
    setAttributes(area, { class: 'area', points: `${xy[0][0].toFixed(1)},${height} ${line} ${width},${height}` });
    const stroke = document.createElementNS(SVG_NS, 'polyline');
    setAttributes(stroke, { class: 'line', points: line });
    svg.append(area, stroke);
  }
  return svg;
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
}

function refusalList(refused) {
  const nonzero = Object.entries(refused || {}).filter(([, count]) => Number(count) > 0);
  if (!nonzero.length) return el('p', 'refusals none', t('refusal.none'));
  const list = el('ul', 'refusals');
  for (const [reason, count] of nonzero) {
    const item = el('li');
    item.dataset.reason = reason;
    item.append(el('span', 'reason', label('refusal.', reason)), el('span', 'count', num(Number(count))));
    list.append(item);
  }
  return list;
}

// ---- chat: the room, who is in it, who left, the bridge

function drawRoom(lines) {
  const box = $('room');
  followBottom(box, () => {
    box.replaceChildren(...(lines.length ? lines.map(roomLine) : [emptyNote('room.empty', 'chat')]));
  });
}

function roomLine(line) {
  const row = el('div', 'room-line');
  const time = el('span', 'time', clockTime(line.at));
  if (line.at_text) time.title = line.at_text;
  row.append(time);
  // The text names its speaker already (`[kim] hello`): the name is a tooltip.
  if (line.notice) row.classList.add('notice');
  else if (line.name) row.title = shownText(line.name);
  row.append(...shownNodes(line.text, 'text'));
  return row;
}

function drawMembers(open) {
  const connections = Array.isArray(open.connections) ? open.connections : [];
  const total = typeof open.total === 'number' ? open.total : connections.length;
  $('members-total').textContent = tn('members.total', total);
  const more = $('members-more');
  more.textContent = t('members.more', { shown: num(connections.length), total: num(total) });
  more.classList.toggle('hidden', total <= connections.length);
  fillTable($('members'), connections.length ? connections.map(memberRow) : [emptyRow(7, 'members.empty', 'chat')]);
}

function memberRow(member) {
  const row = el('tr');
  row.dataset.id = member.id;
  const since = cell('since', stayed(member));
  if (typeof member.since === 'number') since.dataset.since = member.since;
  if (member.since_text) since.title = member.since_text;
  const name = cell('name', member.name ? shownNodes(member.name, 'shown') : '–');
  const muted = mutedBadge(member);
  if (muted) name.append(' ', muted);
  row.append(
    name,
    cell('addr', shownText(member.addr)),
    since,
    cell('said num', num(member.said)),
    cell('skipped num' + (member.skipped > 0 ? ' nonzero' : ''), num(member.skipped)),
    cell('behind num' + (member.behind > 0 ? ' nonzero' : ''), num(member.behind)),
    teacher()?.memberCell(member) ?? cell('teacher-only'),
  );
  return row;
}

/** "muted 4m 59s" for a member the teacher muted, counting down; it goes
 *  at its end (the snapshot then has no `muted_until`). */
function mutedBadge(member) {
  const until = Number(member.muted_until);
  if (!(until > serverNow())) return null;
  const left = el('span', null, duration(until - serverNow()));
  left.dataset.until = until;
  left.dataset.gone = '.badge';
  const badge = el('span', 'badge warn muted', t('members.muted') + ' ');
  badge.append(left);
  return badge;
}

function drawClosed(closed) {
  const connections = Array.isArray(closed.connections) ? closed.connections : [];
  fillTable($('closed'), connections.length ? connections.map(closedRow) : [emptyRow(5, 'closed.empty', 'chat')]);
}

/** How long a connection has been (or was) open, in the page's language. */
function stayed(member) {
  return typeof member.connected_seconds === 'number' ? duration(member.connected_seconds) : (member.connected_text ?? '–');
}

function closedRow(member) {
  const row = el('tr');
  row.dataset.id = member.id;
  const closedAt = cell('closed', clockTime(member.closed_at));
  if (member.closed_at_text) closedAt.title = member.closed_at_text;
  row.append(
    cell('name', member.name ? shownNodes(member.name, 'shown') : '–'),
    cell('addr', shownText(member.addr)),
    cell('since', stayed(member)),
    closedAt,
    cell('reason', member.reason == null ? '–' : reasonText(member.reason)),
  );
  return row;
}

function drawBridge(bridge) {
  $('bridge').classList.toggle('hidden', !bridge);
  if (!bridge) return;
  $('bridge-url').textContent = shownText(bridge.url);
  const state = $('bridge-state');
  state.textContent = t(bridge.connected ? 'bridge.connected' : 'bridge.disconnected');
  state.className = 'badge ' + (bridge.connected ? 'good' : 'bad');
  const hubs = Array.isArray(bridge.hubs) ? bridge.hubs : [];
  $('bridge-hubs').replaceChildren(...(hubs.length
    ? hubs.map((hub) => {
      const item = el('li');
      item.append(...shownNodes(hub.host, 'host'), el('span', 'count', tn('bridge.hub_clients', hub.clients)));
      return item;
    })
    : [el('li', 'empty', t('bridge.no_hubs'))]));
}

// ---- activity: JSON echo, UDP echo, discovery

/** One event of /api/v1/activity: when, who, what came in, what went out
 *  (or the error, or why it was refused). */
function eventView(event) {
  const box = el('div', 'event');
  box.dataset.kind = event.kind;
  const head = el('div', 'event-head');
  const time = el('span', 'time', clockTime(event.at));
  if (event.at_text) time.title = event.at_text;
  head.append(time, el('span', 'peer', shownText(event.peer)), el('span', 'kind', label('kind.', event.kind)));
  box.append(head);
  if (event.input) box.append(eventRow('event.in', shownNodes(event.input, 'input')));
  if (event.error) box.append(eventRow('event.error', [el('span', 'error', errorText(event.error))]));
  else if (event.output) box.append(eventRow('event.out', shownNodes(event.output, 'output')));
  if (event.reason) box.append(eventRow('event.reason', [el('span', 'reason', reasonText(event.reason))]));
  return box;
}

function eventRow(key, nodes) {
  const row = el('div', 'event-row');
  const value = el('span', 'value');
  value.append(...nodes);
  row.append(el('span', 'label', t(key)), value);
  return row;
}

function errorText(error) {
  return t('json.error_at', { line: num(error.line), column: num(error.column), message: String(error.message ?? '') });
}

/** Events (newest last) grouped by source IP: the IP that spoke last first,
 *  each group newest first. */
function groupByIp(events) {
  const groups = new Map();
  for (let i = events.length - 1; i >= 0; i--) {
    const ip = hostOf(events[i].peer);
    if (!groups.has(ip)) groups.set(ip, []);
    groups.get(ip).push(events[i]);
  }
  return [...groups];
}

function ipGroup([ip, events]) {
  const group = el('div', 'group');
  group.dataset.ip = ip;
  const head = el('h4', 'group-head');
  head.append(el('span', 'ip', ip), el('span', 'count', tn('activity.events', events.length)));
  const errors = events.filter((e) => e.kind === 'error' || e.error).length;
  if (errors) head.append(el('span', 'badge bad', tn('activity.errors', errors)));
  group.append(head, ...events.map(eventView));
  return group;
}

function newestFirst(events) {
  return (Array.isArray(events) ? events : []).slice().reverse();
}

function drawJson(json) {
  const open = json.open || {};
  const openCount = typeof open.total === 'number' ? open.total : (open.connections || []).length;
  $('json-open').textContent = tn('json.open', openCount);
  const box = $('json-activity');
  const groups = groupByIp(Array.isArray(json.activity) ? json.activity : []);
  keepScroll(box, () => {
    box.replaceChildren(...(groups.length ? groups.map(ipGroup) : [emptyNote('json.empty', 'json_echo')]));
  });
}

function drawUdp(udp) {
  const box = $('udp-activity');
  const events = newestFirst(udp.activity);
  keepScroll(box, () => {
    box.replaceChildren(...(events.length ? events.map(eventView) : [emptyNote('udp.empty', 'udp_echo')]));
  });
}

function drawDiscovery(discovery) {
  const heard = Array.isArray(discovery.heard) ? discovery.heard : [];
  fillTable($('heard'), heard.length ? heard.map(heardRow) : [emptyRow(5, 'heard.empty', 'discovery')]);
  const box = $('discovery-activity');
  const events = newestFirst(discovery.activity);
  keepScroll(box, () => {
    box.replaceChildren(...(events.length ? events.map(eventView) : [emptyNote('probes.empty', 'discovery')]));
  });
}

function heardRow(pi) {
  const row = el('tr');
  const first = cell('first', clockTime(pi.first_seen));
  const last = cell('last', clockTime(pi.last_seen));
  if (pi.first_seen_text) first.title = pi.first_seen_text;
  if (pi.last_seen_text) last.title = pi.last_seen_text;
  row.append(cell('from', shownText(pi.from)), cell('text', shownNodes(pi.text, 'shown')), first, last,
    cell('count num', num(pi.count)));
  return row;
}

// ---------------------------------------------------------------- the stream

const stream = { source: null, retries: 0, timer: 0, lastAlive: 0, fresh: true };

function connectStream() {
  stream.timer = 0;
  stream.fresh = true;
  stream.lastAlive = Date.now();
  const source = new EventSource(STREAM_URL);
  stream.source = source;
  source.addEventListener('snapshot', (e) => { markAlive(); receiveSnapshot(e.data); });
  source.addEventListener('ping', markAlive);
  source.addEventListener('message', markAlive);
  source.addEventListener('error', streamLost);
}

function markAlive() {
  stream.lastAlive = Date.now();
}

/** Closes the stream (EventSource's own retry has no backoff) and tries
 *  again after 1 s, 2 s, 4 s, then every 5 s. */
function streamLost() {
  if (stream.source) { stream.source.close(); stream.source = null; }
  showBanner(true);
  if (stream.timer) return;
  const delay = BACKOFF_MS[Math.min(stream.retries, BACKOFF_MS.length - 1)];
  stream.retries += 1;
  stream.timer = setTimeout(connectStream, delay);
}

/** A stream that says nothing for 20 s (the server pings every 15 s) is lost. */
function watchStream() {
  if (stream.source && Date.now() - stream.lastAlive > STALE_MS) streamLost();
}

function showBanner(show) {
  $('banner').classList.toggle('hidden', !show);
}

function receiveSnapshot(data) {
  let snapshot;
  try { snapshot = JSON.parse(data); } catch (e) { console.error('bad snapshot', e); return; }
  if (!snapshot || typeof snapshot !== 'object') return;
  if (stream.fresh) {
    // The first snapshot of a connection is whole: draw everything anew.
    stream.fresh = false;
    stream.retries = 0;
    rendered.clear();
    showBanner(false);
  }
  view.latest = snapshot;
  setServerClock(snapshot.status || {});
  if (!view.paused) render(snapshot);
}

// ---------------------------------------------------------------- pause

function togglePause() {
  view.paused = !view.paused;
  updatePauseButton();
  if (!view.paused && view.latest && view.latest !== view.shown) render(view.latest);
}

function updatePauseButton() {
  const button = $('pause');
  button.textContent = t(view.paused ? 'header.resume' : 'header.pause');
  button.setAttribute('aria-pressed', String(view.paused));
  document.body.classList.toggle('paused', view.paused);
}

// ---------------------------------------------------------------- the chat box

const chat = { socket: null, state: 'out' };

function chatJoin() {
  if (chat.socket) return;
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + CHAT_PATH;
  const name = $('chat-name').value.trim();
  let socket;
  try { socket = new WebSocket(url); } catch (e) { console.error(e); setChatState('left'); return; }
  chat.socket = socket;
  setChatState('connecting');
  socket.addEventListener('open', () => {
    setChatState('joined');
    if (name) socket.send('/nick ' + name);
    $('chat-input').focus();
  });
  socket.addEventListener('message', (e) => { if (typeof e.data === 'string') chatHeard(e.data); });
  socket.addEventListener('close', () => {
    if (chat.socket !== socket) return;
    chat.socket = null;
    setChatState('left');
  });
}

/** Says bye and lets the hub close, so its goodbye line is heard; closes
 *  from this side if it has not within LEAVE_MS. */
function chatLeave() {
  const socket = chat.socket;
  if (!socket) return;
  if (socket.readyState !== WebSocket.OPEN) { socket.close(); return; }
  socket.send('bye');
  $('chat-leave').disabled = true;
  setTimeout(() => socket.close(), LEAVE_MS);
}

function chatSend(event) {
  event.preventDefault();
  const input = $('chat-input');
  const text = input.value;
  const socket = chat.socket;
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(text);
  input.value = '';
  chatLog('mine', t('chatbox.mine', { text }));
}

/** A frame from the hub: one or more lines, each ending "\n". */
function chatHeard(frame) {
  const pieces = frame.split('\n');
  if (pieces[pieces.length - 1] === '') pieces.pop();
  for (const piece of pieces) chatLog('heard', piece);
}

function chatLog(className, text) {
  const log = $('chat-log');
  log.append(el('div', className, text));
  while (log.childElementCount > CHAT_LOG_MAX) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

/** out (never joined), connecting, joined, left. */
function setChatState(state) {
  chat.state = state;
  const shown = $('chat-state');
  shown.textContent = t('chatbox.state.' + state);
  shown.dataset.state = state;
  const inRoom = state === 'joined';
  const busy = state === 'joined' || state === 'connecting';
  $('chat-join').disabled = busy;
  $('chat-name').disabled = busy;
  $('chat-leave').disabled = !busy;
  $('chat-input').disabled = !inRoom;
  $('chat-send').disabled = !inRoom;
}

// ---------------------------------------------------------------- the teacher

/** The teacher's controls (teacher.js), once loaded; they draw with these. */
function teacher() {
  return window.pinetd.teacher;
}

window.pinetd = {
  t, el, cell, fillTable, emptyRow, clockTime, duration, serverNow, shownText, shownNodes, num, label,
  /** Draws the members and the teacher's part again (signed in or out). */
  redraw() {
    rendered.delete('members');
    rendered.delete('teacher');
    if (view.shown) render(view.shown);
  },
};

// ---------------------------------------------------------------- start

function wireControls() {
  $('pause').addEventListener('click', togglePause);
  $('chat-join').addEventListener('click', chatJoin);
  $('chat-name').addEventListener('keydown', (e) => { if (e.key === 'Enter') chatJoin(); });
  $('chat-leave').addEventListener('click', chatLeave);
  $('chat-form').addEventListener('submit', chatSend);
}

async function start() {
  wireControls();
  let saved = null;
  try { saved = localStorage.getItem(LANG_KEY); } catch (e) { /* no storage */ }
  const pageLang = document.documentElement.lang;
  await loadLanguage(validLang(saved) ? saved : validLang(pageLang) ? pageLang : 'en');
  applyStaticStrings();
  connectStream();
  setInterval(tick, 1000);
}

start();

})();
