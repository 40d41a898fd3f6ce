// A small, safe Markdown renderer: it builds DOM nodes and text nodes only, never parses HTML.
// Supported: paragraphs, # headings, - / 1. lists, ``` fences, `code`, **bold**, *italic*, [text](http(s) url).
import { el } from './dom.js';

const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\s][^*\n]*\*)|(\[[^\]\n]+\]\([^)\s]+\))|(https?:\/\/[^\s<>()"“”‘’]*[^\s<>()"“”‘’.,;:!?])/g;
const SAFE_URL = /^https?:\/\/[^\s]+$/i;

export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text).split('\n');
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (/^\s*```/.test(line)) {
      const body = [];
      for (i++; i < lines.length && !/^\s*```/.test(lines[i]); i++) body.push(lines[i]);
      i++;
      out.append(el('pre', {}, el('code', { text: body.join('\n') })));
    } else if (/^#{1,6}\s/.test(line)) {
      const level = Math.min(6, line.match(/^#+/)[0].length + 2);
      out.append(el(`h${level}`, {}, inline(line.replace(/^#+\s+/, ''))));
      i++;
    } else if (/^\s*([-*+]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = el(ordered ? 'ol' : 'ul');
      for (; i < lines.length && /^\s*([-*+]|\d+\.)\s+/.test(lines[i]); i++) {
        list.append(el('li', {}, inline(lines[i].replace(/^\s*([-*+]|\d+\.)\s+/, ''))));
      }
      out.append(list);
    } else if (!line.trim()) {
      i++;
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && !/^\s*(```|#{1,6}\s|([-*+]|\d+\.)\s+)/.test(lines[i]); i++) {
        para.push(lines[i]);
      }
      out.append(el('p', {}, inline(para.join('\n'))));
    }
  }
  return out;
}

function inline(text) {
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) nodes.push(text.slice(last, m.index));
    nodes.push(token(m));
    last = m.index + m[0].length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

function token([whole, code, bold, italic, link, url]) {
  if (code) return el('code', { text: code.slice(1, -1) });
  if (bold) return el('strong', {}, inline(bold.slice(2, -2)));
  if (italic) return el('em', {}, inline(italic.slice(1, -1)));
  if (link) {
    const [, label, href] = link.match(/^\[([^\]]+)\]\(([^)]+)\)$/);
    return SAFE_URL.test(href) ? anchor(href, label) : whole;
  }
  return anchor(url, url);
}

function anchor(href, label) {
  return el('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow', text: label });
}
