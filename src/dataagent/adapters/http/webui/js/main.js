// The app: key prompt, session list, history with older pages, and the live session over one socket.
import { $, el } from './dom.js';
import { applyStatic, currentLang, setLang, t } from './i18n.js';
import { api, auth, hooks, SessionSocket, uiConfig } from './api.js';
import { historyRun, RunView, userBubble } from './run.js';

const PAGE = 30;
const log = $('#log');
const question = $('#question');
const state = { sessionId: null, socket: null, runs: new Map(), activeRunId: null, finished: new Set(),
  buffer: null, oldestId: null, hasOlder: false, loadingOlder: false, busy: false };

function status(text) { $('#status').textContent = text || ''; }

hooks.busy = (on) => { state.busy = on; status(on ? t('busy') : ''); };
hooks.unauthorized = () => askKey(true);

// -- API key --------------------------------------------------------------------------------------------------
async function askKey(wrong = false) {
  auth.clear();
  $('#key-error').textContent = wrong ? t('wrongKey') : '';
  if (!$('#key-dialog').open) $('#key-dialog').showModal();
  $('#api-key').focus();
}

$('#key-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  auth.set($('#api-key').value.trim());
  try {
    await api('/sessions?limit=1');
  } catch (error) {
    if (error.status === 401) return askKey(true);
    throw error;
  }
  $('#api-key').value = '';
  $('#key-dialog').close();
  start();
});
$('#key-dialog').addEventListener('cancel', (event) => event.preventDefault());
$('#forget-key').addEventListener('click', () => { state.socket?.close(); askKey(); });

// -- sessions -------------------------------------------------------------------------------------------------
async function refreshSessions() {
  const { sessions } = await api('/sessions?limit=100');
  $('#sessions').replaceChildren(...sessions.map((s) => {
    const title = s.title || t('untitled');
    return el('li', { 'data-session-id': s.session_id },
      el('button', { type: 'button', class: 'open', 'aria-current': String(s.session_id === state.sessionId), onclick: () => openSession(s.session_id) },
        el('span', { class: 'title', text: title }), el('small', { class: 'count', text: t('messages', s.message_count) })),
      el('button', { type: 'button', class: 'delete', 'aria-label': t('deleteSession', title), text: '×', onclick: () => removeSession(s.session_id, title) }));
  }));
}

async function removeSession(id, title) {
  if (!window.confirm(t('confirmDelete', title))) return;
  await api(`/sessions/${encodeURIComponent(id)}`, { method: 'DELETE' });
  if (id === state.sessionId) newChat();
  await refreshSessions();
}

// A new session id (crypto.randomUUID needs a secure context; plain http on an intranet host is not one).
function newSessionId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

function newChat() {
  openSession(newSessionId(), true);
  question.focus();
}

// -- one session ----------------------------------------------------------------------------------------------
function openSession(id, fresh = false) {
  state.socket?.close();
  document.body.dataset.socket = 'connecting';
  Object.assign(state, { sessionId: id, fresh, runs: new Map(), activeRunId: null, finished: new Set(), buffer: [], oldestId: null, hasOlder: false });
  history.replaceState(null, '', `#session=${encodeURIComponent(id)}`);
  log.replaceChildren();
  setRunning(null);
  for (const b of document.querySelectorAll('#sessions .open')) b.setAttribute('aria-current', String(b.closest('li').dataset.sessionId === id));
  state.socket = new SessionSocket(id, { connected: onConnected, event: onEvent, state: onSocketState, closed: onSocketClosed });
  state.socket.open();
}

async function onConnected(data, resumed) {
  if (!resumed || data.recovered === false) await reloadHistory();
}

function onSocketState(name) {
  document.body.dataset.socket = name;
  status({ open: state.busy ? t('busy') : '', busy: t('busy'), reconnecting: t('reconnecting') }[name]);
}

function onSocketClosed(code) {
  if (code === 4401) askKey(true);
  else status(t('sessionGone'));
}

async function loadHistory() {
  let info = null;
  try {
    if (!state.fresh) info = await api(`/sessions/${encodeURIComponent(state.sessionId)}`);
  } catch (error) {
    if (error.code !== 'session_not_found') throw error;
  }
  state.fresh = false;
  log.replaceChildren();
  state.runs = new Map();
  state.finished = new Set();
  setRunning(info?.active_run_id ?? null);
  if (!info) return;
  const offset = Math.max(0, info.message_count - PAGE);
  const page = await api(`/sessions/${encodeURIComponent(state.sessionId)}/messages?limit=${PAGE}&offset=${offset}`);
  state.hasOlder = offset > 0;
  log.append(...renderMessages(page.messages));
  state.oldestId = page.messages[0]?.message_id ?? null;
  log.scrollTop = log.scrollHeight;
}

async function loadOlder() {
  if (!state.hasOlder || state.loadingOlder || !state.oldestId) return;
  state.loadingOlder = true;
  const id = state.sessionId;
  try {
    const page = await api(`/sessions/${encodeURIComponent(id)}/messages?limit=${PAGE}&before=${encodeURIComponent(state.oldestId)}`);
    if (id !== state.sessionId) return;
    const height = log.scrollHeight;
    log.prepend(...renderMessages(page.messages));
    log.scrollTop += log.scrollHeight - height;
    state.oldestId = page.messages[0]?.message_id ?? state.oldestId;
    state.hasOlder = page.has_more;
  } finally {
    state.loadingOlder = false;
  }
}

function renderMessages(messages) {
  const nodes = [];
  const tools = new Map();
  for (const m of messages) {
    if (m.role === 'user') nodes.push(userBubble(m.content, m.message_id));
    else if (m.role === 'tool') tools.set(m.run_id, [...(tools.get(m.run_id) || []), m]);
    else if (m.role === 'assistant') {
      state.finished.add(m.run_id);
      nodes.push(historyRun(m.run_id, tools.get(m.run_id) || [], m, m.metadata?.tool_calls).node);
    }
  }
  return nodes;
}

// -- live events ----------------------------------------------------------------------------------------------
function onEvent(frame) {
  if (state.buffer) { state.buffer.push(frame); return; }
  const data = frame.data || {};
  if (frame.seq === undefined || frame.seq === null) {
    if (frame.event_type !== 'error') return;
    status(`${t('error')}: ${data.message}`);
    if (data.error_code === 'run_in_progress' && state.activeRunId === 'pending') {
      log.querySelector('.msg.user[data-pending]')?.remove();
      setRunning(null);
    }
    return;
  }
  const runId = frame.run_id || data.run_id;
  if (state.finished.has(runId)) return;
  if (frame.event_type === 'run_started') showQuestion(data.message_id);
  const view = runView(runId, frame.event_type !== 'run_started');
  switch (frame.event_type) {
    case 'text': if (data.content) view.appendText(data.content); break;
    case 'tool_call': view.toolCall(data); break;
    case 'tool_result': view.toolResult(data); break;
    case 'hitl': view.hitl(data); break;
    case 'hitl_resolved': view.hitlResolved(data); break;
    case 'error': view.error(data); break;
    case 'done': finishRun(view, data); break;
    default: break;
  }
  if (nearBottom()) log.scrollTop = log.scrollHeight;
}

// A run first seen after its start (its beginning was lost with a failed recovery) is reloaded once it ends.
function runView(runId, partial = false) {
  if (!state.runs.has(runId)) {
    const view = new RunView(runId, decide);
    view.partial = partial;
    state.runs.set(runId, view);
    log.append(view.node);
    setRunning(runId);
  }
  return state.runs.get(runId);
}

function finishRun(view, data) {
  view.done(data);
  state.finished.add(view.runId);
  view.node.dataset.messageId = data.message_id || '';
  setRunning(null);
  refreshSessions();
  if (view.partial) reloadHistory();
}

async function reloadHistory() {
  state.buffer = [];
  try {
    await loadHistory();
  } finally {
    const buffered = state.buffer || [];
    state.buffer = null;
    buffered.forEach(onEvent);
  }
}

// The question of a run started in another tab is fetched; the one asked here is already shown.
async function showQuestion(messageId) {
  const pending = log.querySelector('.msg.user[data-pending]');
  if (pending) {
    pending.removeAttribute('data-pending');
    pending.dataset.messageId = messageId;
    return;
  }
  if (log.querySelector(`[data-message-id="${CSS.escape(messageId)}"]`)) return;
  const placeholder = userBubble('', messageId);
  log.append(placeholder);
  const info = await api(`/sessions/${encodeURIComponent(state.sessionId)}`);
  const page = await api(`/sessions/${encodeURIComponent(state.sessionId)}/messages?limit=20&offset=${Math.max(0, info.message_count - 20)}`);
  placeholder.textContent = page.messages.find((m) => m.message_id === messageId)?.content ?? '';
}

function decide(interruptId, decision) {
  return state.socket.send('hitl_decision', { interrupt_id: interruptId, decisions: [decision] });
}

function setRunning(runId) {
  state.activeRunId = runId;
  $('#stop').hidden = !runId;
  $('#send').disabled = Boolean(runId);
}

function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 120; }

// -- composer -------------------------------------------------------------------------------------------------
function send() {
  const text = question.value.trim();
  if (!text || state.activeRunId) return;
  if (!state.socket.send('chat', { message: text })) return status(t('reconnecting'));
  const bubble = userBubble(text);
  bubble.dataset.pending = 'true';
  log.append(bubble);
  log.scrollTop = log.scrollHeight;
  question.value = '';
  setRunning('pending');
}

$('#composer').addEventListener('submit', (event) => { event.preventDefault(); send(); });
question.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
});
$('#stop').addEventListener('click', () => {
  const runId = state.activeRunId !== 'pending' ? state.activeRunId : undefined;
  state.socket.send('cancel', runId ? { run_id: runId } : {});
});
$('#new-chat').addEventListener('click', newChat);
log.addEventListener('scroll', () => { if (log.scrollTop < 60) loadOlder(); });
$('#lang').addEventListener('change', (event) => { setLang(event.target.value); refreshSessions(); });

// -- start ----------------------------------------------------------------------------------------------------
async function start() {
  $('#forget-key').hidden = auth.disabled;
  await refreshSessions();
  const match = location.hash.match(/^#session=([A-Za-z0-9_-]{1,64})$/);
  if (match) openSession(match[1]);
  else newChat();
}

async function boot() {
  $('#lang').value = currentLang();
  applyStatic();
  auth.disabled = Boolean((await uiConfig()).auth_disabled);
  if (!auth.disabled && !auth.key) return askKey();
  start();
}

boot();
