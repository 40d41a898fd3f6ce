// A result table: sortable headers, row count, "truncated" note, CSV copy/download, and a chart when given.
import { el } from './dom.js';
import { t } from './i18n.js';
import { renderChart } from './chart.js';

export function resultView(table, chart) {
  const columns = table.columns || [];
  let rows = (table.rows || []).slice();
  const body = el('tbody');
  const fill = () => body.replaceChildren(...rows.map((row) => el('tr', {}, row.map((v) => el('td', { text: cell(v) })))));
  let sorted = { index: -1, dir: 1 };
  const headers = columns.map((name, index) => {
    const th = el('th', { scope: 'col', 'aria-sort': 'none' });
    th.append(el('button', { type: 'button', title: t('sortBy', name), text: name, onclick: () => sortBy(index, th) }));
    return th;
  });
  const sortBy = (index, th) => {
    sorted = { index, dir: sorted.index === index ? -sorted.dir : 1 };
    rows.sort((a, b) => compare(a[index], b[index]) * sorted.dir);
    headers.forEach((h) => h.setAttribute('aria-sort', 'none'));
    th.setAttribute('aria-sort', sorted.dir > 0 ? 'ascending' : 'descending');
    fill();
  };
  fill();
  const tableBox = el('div', { class: 'table-wrap' }, el('table', {}, el('thead', {}, el('tr', {}, headers)), body));
  const copy = el('button', { type: 'button', class: 'copy-csv', text: t('copyCsv') });
  copy.addEventListener('click', async () => {
    await copyText(toCsv(columns, rows));
    copy.textContent = t('copied');
  });
  const download = el('button', { type: 'button', class: 'download-csv', text: t('downloadCsv'), onclick: () => save(toCsv(columns, rows)) });
  const count = el('span', { class: 'row-count', text: t('rows', table.row_count ?? rows.length) });
  const note = table.truncated ? el('span', { class: 'truncated', text: t('truncated') }) : null;
  const bar = el('div', { class: 'bar' }, count, note, copy, download);
  const box = el('div', { class: 'result' }, bar, tableBox);
  if (chart && typeof chart === 'object') addChart(box, bar, chart);
  return box;
}

function addChart(box, bar, spec) {
  const chartBox = chartView(spec);
  const toggle = el('button', { type: 'button', class: 'toggle-chart', 'aria-pressed': 'true', text: t('hideChart') });
  toggle.addEventListener('click', () => {
    chartBox.hidden = !chartBox.hidden;
    toggle.textContent = t(chartBox.hidden ? 'showChart' : 'hideChart');
    toggle.setAttribute('aria-pressed', String(!chartBox.hidden));
  });
  bar.append(toggle);
  box.append(chartBox);
}

// A chart alone (a model-proposed chart comes without a table); on failure it says why, as text.
export function chartView(spec) {
  const chartBox = el('figure', { class: 'chart', 'aria-label': t('chart') });
  renderChart(chartBox, spec).catch((error) => {
    chartBox.replaceChildren(el('p', { class: 'error', text: String(error.message || error) }));
  });
  return chartBox;
}

function cell(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function compare(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : -1;
  if (b === null || b === undefined) return 1;
  return cell(a).localeCompare(cell(b), undefined, { numeric: true });
}

export function toCsv(columns, rows) {
  const quote = (v) => {
    const s = cell(v);
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [columns, ...rows].map((row) => row.map(quote).join(',')).join('\r\n') + '\r\n';
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el('textarea', { 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
}

function save(text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const link = el('a', { href: url, download: 'result.csv' });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
