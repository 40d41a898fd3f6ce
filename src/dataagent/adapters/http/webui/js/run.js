// One answer in the log: its tool calls (collapsed), result tables, approval cards, streamed text and status.
import { el } from './dom.js';
import { t } from './i18n.js';
import { renderMarkdown } from './markdown.js';
import { chartView, resultView } from './table.js';
import { approvalCard } from './approval.js';

export function userBubble(text, messageId) {
  return el('div', { class: 'msg user', 'data-message-id': messageId, text });
}

export class RunView {
  constructor(runId, decide) {
    this.runId = runId;
    this.decide = decide;
    this.text = '';
    this.tools = new Map();
    this.cards = new Map();
    this.parts = el('div', { class: 'parts' });
    this.status = el('div', { class: 'run-status' });
    this.node = el('article', { class: 'msg assistant', 'data-run-id': runId }, this.parts, this.status);
  }

  appendText(content) {
    this.text += content;
    let last = this.parts.lastElementChild;
    if (!last || !last.classList.contains('md')) {
      last = el('div', { class: 'md' });
      last.raw = '';
      this.parts.append(last);
    }
    last.raw += content;
    if (!this.pending) {
      this.pending = true;
      setTimeout(() => this.flushText(), 30);
    }
  }

  flushText() {
    this.pending = false;
    for (const md of this.parts.querySelectorAll('.md')) {
      if (md.rendered !== md.raw) {
        md.replaceChildren(renderMarkdown(md.raw));
        md.rendered = md.raw;
      }
    }
  }

  toolCall({ tool_call_id: id, tool_name: name, tool_args: args }) {
    const result = el('pre', { class: 'json tool-output' });
    const details = el('details', { class: 'tool', 'data-tool-call-id': id },
      el('summary', { text: t('toolCall', name) }),
      el('div', { text: t('arguments') }), el('pre', { class: 'json tool-args', text: JSON.stringify(args ?? {}, null, 2) }),
      el('div', { text: t('result') }), result);
    this.tools.set(id, { details, result });
    this.parts.append(details);
  }

  toolResult(data) {
    if (!this.tools.has(data.tool_call_id)) this.toolCall({ ...data, tool_args: {} });
    const { details, result } = this.tools.get(data.tool_call_id);
    result.textContent = data.result ?? '';
    details.dataset.status = data.status;
    if (data.status === 'error') details.querySelector('summary').append(el('span', { class: 'badge failed', text: t('error') }));
    const extra = data.data || {};
    if (extra.table) this.parts.append(resultView(extra.table, extra.chart));
    else if (extra.chart) this.parts.append(el('div', { class: 'result' }, chartView(extra.chart)));
  }

  hitl(data) {
    const card = approvalCard(data, (decision) => this.decide(data.interrupt_id, decision));
    this.cards.set(data.interrupt_id, card);
    this.parts.append(card);
  }

  hitlResolved({ interrupt_id: id, decision }) {
    const card = this.cards.get(id);
    if (card) card.resolve(decision, card.sentHere());
  }

  error({ message }) {
    this.parts.append(el('p', { class: 'error', text: message }));
  }

  done({ status, cancelled }) {
    this.flushText();
    this.finish(cancelled ? 'cancelled' : status);
  }

  finish(status) {
    this.node.dataset.status = status;
    this.status.replaceChildren(el('span', { class: `badge ${status}`, text: t(status) }));
    for (const card of this.cards.values()) if (!card.dataset.outcome) card.resolve({ type: 'reject', source: 'cancel' }, true);
  }
}

// A finished run from history: its tool messages (with tables) and its assistant message.
export function historyRun(runId, tools, assistant, toolCalls) {
  const view = new RunView(runId, () => false);
  const args = new Map((toolCalls || []).map((c) => [c.tool_call_id, c.tool_args]));
  for (const m of tools) {
    const meta = m.metadata || {};
    view.toolCall({ tool_call_id: meta.tool_call_id, tool_name: meta.tool_name, tool_args: args.get(meta.tool_call_id) });
    view.toolResult({ tool_call_id: meta.tool_call_id, result: m.content, status: meta.status || m.status,
      data: { table: meta.table, chart: meta.chart } });
  }
  if (assistant.content) view.appendText(assistant.content);
  view.flushText();
  view.node.dataset.messageId = assistant.message_id;
  view.finish(assistant.status || 'completed');
  return view;
}
