// The approval card of a `hitl` event: the SQL laid out, what it touches, time left, and the three decisions.
import { el } from './dom.js';
import { t } from './i18n.js';

const KEYWORDS = new Set(('select from where group by order having limit offset join left right inner outer full cross on as '
  + 'and or not in is null like between case when then else end distinct union all insert into values update set '
  + 'delete create table drop alter with explain show desc asc count sum avg min max exists').split(' '));
const SQL_TOKEN = /('(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_]*)|(\s+|[^\sA-Za-z0-9_'"`]+)/g;

export function sqlNode(sql) {
  const pre = el('pre', { class: 'sql' });
  for (const [, str, num, word, other] of String(sql).matchAll(SQL_TOKEN)) {
    if (str) pre.append(el('span', { class: 'str', text: str }));
    else if (num) pre.append(el('span', { class: 'num', text: num }));
    else if (word && KEYWORDS.has(word.toLowerCase())) pre.append(el('span', { class: 'kw', text: word }));
    else pre.append(word || other);
  }
  return pre;
}

// decide(decision) sends a decision; it returns false when it could not be sent.
export function approvalCard(data, decide) {
  const action = data.action || {};
  const args = action.args || {};
  const allowed = new Set(data.allowed_decisions || ['approve', 'reject', 'edit']);
  const card = el('section', { class: 'approval', 'aria-label': t('approvalNeeded', action.name), 'data-interrupt-id': data.interrupt_id });
  const expires = el('span', { class: 'expires' });
  const meta = el('div', { class: 'meta' },
    args.statement_type ? el('span', { class: 'badge statement-type', text: args.statement_type }) : null,
    typeof args.read_only === 'boolean'
      ? el('span', { class: `badge ${args.read_only ? 'read-only' : 'writes'}`, text: t(args.read_only ? 'readOnly' : 'writes') }) : null,
    Array.isArray(args.tables) ? el('span', { class: 'tables', text: `${t('tables')}: ${args.tables.join(', ') || t('none')}` }) : null,
    estimateNode(args.estimate),
    expires);
  const written = typeof args.sql === 'string' ? sqlNode(args.sql) : el('pre', { class: 'json', text: JSON.stringify(args, null, 2) });
  const body = typeof args.executed_sql === 'string' ? policyBody(args, written) : written;
  const outcome = el('p', { class: 'outcome', role: 'status' });
  const reason = el('input', { type: 'text', class: 'reason', 'aria-label': t('reason'), placeholder: t('reason') });
  const editor = el('textarea', { class: 'edit-sql', 'aria-label': t('statement') });
  editor.value = typeof args.sql === 'string' ? args.sql : JSON.stringify(args, null, 2);
  const buttons = [];
  const send = (decision) => {
    buttons.forEach((b) => { b.disabled = true; });
    outcome.textContent = t('sending');
    if (decide(decision)) return;
    buttons.forEach((b) => { b.disabled = false; });
    outcome.textContent = t('reconnecting');
  };
  const button = (name, cls, onclick) => {
    const b = el('button', { type: 'button', class: cls, text: t(name), onclick });
    buttons.push(b);
    return b;
  };
  const editBox = el('div', { class: 'editor', hidden: true },
    el('label', {}, t('statement'), editor),
    button('runEdited', 'primary submit-edit', () => send({ type: 'edit', args: editedArgs(args, editor.value) })),
    button('cancel', 'cancel-edit', () => { editBox.hidden = true; }));
  const actions = el('div', { class: 'actions' },
    allowed.has('approve') ? button('approve', 'primary approve', () => send({ type: 'approve' })) : null,
    allowed.has('reject') ? reason : null,
    allowed.has('reject') ? button('reject', 'reject', () => send(reason.value.trim() ? { type: 'reject', message: reason.value.trim() } : { type: 'reject' })) : null,
    allowed.has('edit') ? button('edit', 'edit', () => { editBox.hidden = false; editor.focus(); }) : null);
  card.append(el('h3', { text: t('approvalNeeded', action.name) }),
    action.description ? el('p', { class: 'description', text: action.description }) : null,
    meta, body, actions, editBox, outcome);
  const timer = setInterval(() => tick(expires, data.expires_at, timer), 1000);
  tick(expires, data.expires_at, timer);
  card.resolve = (decision, mine) => {
    clearInterval(timer);
    buttons.forEach((b) => { b.disabled = true; });
    actions.hidden = true;
    editBox.hidden = true;
    expires.textContent = '';
    outcome.textContent = describe(decision) + (mine ? '' : t('elsewhere'));
    card.dataset.outcome = decision.type;
  };
  card.sentHere = () => outcome.textContent === t('sending');
  return card;
}

// Under a data policy: the statement as written, then as it will run (rewritten to the allowed columns and rows).
function policyBody(args, written) {
  return el('div', { class: 'policy-sql' },
    el('p', { class: 'sql-label', text: t('asWritten') }), written,
    el('p', { class: 'sql-label', text: t('asRun', args.policy || '') }),
    el('div', { class: 'executed-sql' }, sqlNode(args.executed_sql)));
}

// The database planner's estimate (`args.estimate`, PROTOCOL.md): rows and full scans, or why there is none.
function estimateNode(estimate) {
  if (!estimate || typeof estimate !== 'object') return null;
  if (estimate.available !== true) {
    return el('span', { class: 'estimate unavailable', text: t('estimateUnavailable', String(estimate.reason || '')) });
  }
  const parts = [Number.isFinite(estimate.rows) ? t('aboutRows', estimate.rows) : t('rowsUnknown')];
  const scans = Array.isArray(estimate.full_scans) ? estimate.full_scans.map(String) : [];
  if (scans.length) parts.push(t('fullScan', scans.join(', ')));
  return el('span', { class: `estimate${scans.length ? ' full-scan' : ''}`, title: String(estimate.source || ''),
    text: `${t('estimate')}: ${parts.join(' · ')}` });
}

function editedArgs(args, text) {
  if (typeof args.sql === 'string') return { sql: text };
  try { return JSON.parse(text); } catch { return { value: text }; }
}

function describe(decision) {
  const source = decision.source;
  if (source === 'timeout') return t('timedOut');
  if (source === 'cancel') return t('cancelledRun');
  const base = { approve: t('approved'), reject: t('rejected'), edit: t('edited') }[decision.type] || decision.type;
  return decision.message ? `${base}: ${decision.message}` : base;
}

function tick(node, expiresAt, timer) {
  const left = Math.round((Date.parse(expiresAt) - Date.now()) / 1000);
  if (!expiresAt || Number.isNaN(left)) return;
  if (left <= 0) {
    node.textContent = t('expired');
    clearInterval(timer);
    return;
  }
  node.textContent = t('expiresIn', `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`);
}
