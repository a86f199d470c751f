'use strict';
// The teacher's controls on pinetd's page (docs/web-api.md, "The teacher"):
// sign in with the token of [web] admin_token_file, then kick, mute and
// rename a chat client from the list of connections, say a line to the
// room, block and unblock an address, download today's transcript. The blocks (with their time left) and
// the recent actions are shown to everyone; the controls only to a page
// signed in.
//
// The token stays in this tab (sessionStorage) and goes in the
// Authorization header of each action, never in a cookie. Everything shown
// goes through textContent (app.js's el and cell), never innerHTML.

(() => {

const API = '/api/v1/teacher/';
const TOKEN_KEY = 'pinetd.teacher';
const MUTES = [['60', 'teacher.for.1m'], ['300', 'teacher.for.5m'], ['900', 'teacher.for.15m'], ['0', 'teacher.unmute']];

const $ = (id) => document.getElementById(id);
const page = window.pinetd;
const { t, el, cell } = page;

const state = { token: null, enabled: false, renaming: null };

function savedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
}

function keepToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) { /* private mode: this page only */ }
}

/** Signed in (`token`) or out (null): the controls shown or hidden. */
function setToken(token) {
  state.token = token;
  keepToken(token);
  document.body.classList.toggle('teacher', Boolean(token));
  $('teacher-signin').classList.toggle('hidden', Boolean(token));
  $('teacher-signed').classList.toggle('hidden', !token);
  if (!token) cancelRename();
  page.redraw();
}

function say(text, bad) {
  const message = $('teacher-message');
  message.textContent = text;
  message.classList.toggle('bad', Boolean(bad));
}

/** POSTs `body` to the action `name`; the answer's JSON, or null after
 *  saying what went wrong. */
async function act(name, body, token = state.token) {
  let response;
  let answer = {};
  try {
    response = await fetch(API + name, {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      cache: 'no-store',
    });
    answer = await response.json().catch(() => ({}));
  } catch (e) {
    say(t('teacher.failed', { error: String(e.message || e) }), true);
    return null;
  }
  if (response.ok) return answer;
  if (response.status === 401) {
    if (state.token) setToken(null);
    say(t('teacher.wrong'), true);
  } else if (response.status === 429) {
    say(t('teacher.slow'), true);
  } else if (response.status === 403 && String(answer.error).includes('read-only')) {
    say(t('teacher.read_only'), true);
  } else if (response.status === 503) {
    say(t('teacher.chat_off'), true);
  } else {
    say(t('teacher.failed', { error: String(answer.error ?? response.status) }), true);
  }
  return null;
}

/** Does action `name` and says so. */
async function run(name, body) {
  const answer = await act(name, body);
  if (answer) say(t('teacher.done.' + answer.action, { whom: answer.whom ?? '' }));
  return answer;
}

async function signIn(event) {
  event.preventDefault();
  const input = $('teacher-token');
  const token = input.value.trim();
  if (!token) return;
  if (await act('signin', {}, token)) {
    input.value = '';
    say('');
    setToken(token);
  }
}

function signOut() {
  setToken(null);
  say('');
}

// ---------------------------------------------------------------- a member's controls

/** The teacher's cell of a chat member's row: kick, mute for a time, rename. */
function memberCell(member) {
  if (!state.token) return cell('teacher-only');
  const name = page.shownText(member.name) || '?';
  const kick = el('button', 'small kick', t('teacher.kick'));
  kick.type = 'button';
  kick.dataset.action = 'kick';
  kick.addEventListener('click', () => run('kick', { id: member.id }));
  const mute = el('select', 'small mute');
  mute.dataset.action = 'mute';
  mute.setAttribute('aria-label', t('teacher.mute'));
  mute.append(el('option', null, t('teacher.mute')));
  for (const [seconds, key] of MUTES) {
    const option = el('option', null, t(key));
    option.value = seconds;
    mute.append(option);
  }
  mute.addEventListener('change', () => {
    const seconds = Number(mute.value);
    mute.selectedIndex = 0;
    if (Number.isFinite(seconds)) run('mute', { id: member.id, seconds });
  });
  const rename = el('button', 'small secondary rename', t('teacher.rename'));
  rename.type = 'button';
  rename.dataset.action = 'rename';
  rename.addEventListener('click', () => startRename(member.id, name));
  const controls = el('div', 'member-actions');
  controls.append(kick, mute, rename);
  return cell('teacher-only actions', [controls]);
}

/** Opens the rename form for member `id` (the list is redrawn as it
 *  changes, so the form stays outside it). */
function startRename(id, name) {
  state.renaming = id;
  $('teacher-rename-label').textContent = t('teacher.rename.to', { name });
  $('teacher-rename').classList.remove('hidden');
  const input = $('teacher-rename-name');
  input.value = '';
  input.focus();
}

function cancelRename() {
  state.renaming = null;
  $('teacher-rename').classList.add('hidden');
}

async function rename(event) {
  event.preventDefault();
  const name = $('teacher-rename-name').value.trim();
  if (state.renaming == null || !name) return;
  if (await run('rename', { id: state.renaming, name })) cancelRename();
}

async function sayToRoom(event) {
  event.preventDefault();
  const input = $('teacher-say-text');
  const text = input.value.trim();
  if (text && await run('say', { text })) input.value = '';
}

async function block(event) {
  event.preventDefault();
  const input = $('teacher-block-addr');
  const addr = input.value.trim();
  const seconds = Number($('teacher-block-time').value);
  if (addr && await run('block', { addr, seconds })) input.value = '';
}

/** Downloads today's transcript: fetched with the token (a plain link
 *  could not send it), then saved from memory. */
async function downloadTranscript() {
  let response;
  try {
    response = await fetch(API + 'transcript', { headers: { 'Authorization': 'Bearer ' + state.token }, cache: 'no-store' });
  } catch (e) {
    say(t('teacher.failed', { error: String(e.message || e) }), true);
    return;
  }
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401) setToken(null);
    say(t('teacher.failed', { error: String(answer.error ?? response.status) }), true);
    return;
  }
  const disposition = response.headers.get('Content-Disposition') || '';
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || 'transcript.tsv';
  const url = URL.createObjectURL(await response.blob());
  const link = el('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  say(t('teacher.transcript.done', { name }));
}

// ---------------------------------------------------------------- what everyone sees

/** The teacher's part of a snapshot: shown where a token is set, or while
 *  there are blocks or actions to show. */
function draw(data) {
  const blocks = Array.isArray(data.blocks) ? data.blocks : [];
  const actions = Array.isArray(data.actions) ? data.actions : [];
  state.enabled = Boolean(data.enabled);
  $('teacher-transcript').classList.toggle('hidden', !data.transcript);
  $('teacher').classList.toggle('hidden', !state.enabled && !blocks.length && !actions.length);
  $('teacher-signin').classList.toggle('hidden', !state.enabled || Boolean(state.token));
  const rows = blocks.length ? blocks.map(blockRow) : [page.emptyRow(3, 'teacher.blocks.empty')];
  page.fillTable($('teacher-blocks'), rows);
  const list = $('teacher-actions');
  list.replaceChildren(...(actions.length ? actions.map(actionItem) : [el('li', 'empty', t('teacher.actions.empty'))]));
}

function blockRow(block) {
  const row = el('tr');
  const left = cell('left');
  // Counts down between snapshots (app.js's tick).
  left.dataset.until = page.serverNow() + Number(block.left_seconds || 0);
  left.textContent = page.duration(block.left_seconds);
  const unblock = el('button', 'small secondary', t('teacher.unblock'));
  unblock.type = 'button';
  unblock.addEventListener('click', () => run('unblock', { addr: block.addr }));
  row.append(cell('addr', String(block.addr)), left, state.token ? cell('teacher-only', [unblock]) : cell('teacher-only'));
  return row;
}

function actionItem(action) {
  const item = el('li', 'teacher-action');
  const time = el('span', 'time', page.clockTime(action.at));
  if (action.at_text) time.title = action.at_text;
  const what = el('span', 'what', page.label('teacher.what.', action.what));
  what.dataset.what = String(action.what);
  item.append(time, what, el('span', 'whom', String(action.whom ?? '')), el('span', 'by', String(action.by ?? '')));
  return item;
}

// ---------------------------------------------------------------- start

$('teacher-signin').addEventListener('submit', signIn);
$('teacher-signout').addEventListener('click', signOut);
$('teacher-transcript').addEventListener('click', downloadTranscript);
$('teacher-say').addEventListener('submit', sayToRoom);
$('teacher-block').addEventListener('submit', block);
$('teacher-rename').addEventListener('submit', rename);
$('teacher-rename-cancel').addEventListener('click', cancelRename);

page.teacher = { draw, memberCell };
const saved = savedToken();
if (saved) setToken(saved);
else page.redraw();

})();
