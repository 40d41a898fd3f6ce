// English and Simplified Chinese; picked from the browser's language, switchable, remembered.
const STRINGS = {
  en: {
    language: 'Language', sessions: 'Sessions', newChat: 'New chat', conversation: 'Conversation',
    question: 'Your question', placeholder: 'Ask a question, or an SQL statement such as SELECT * FROM customers',
    send: 'Send', stop: 'Stop', keyTitle: 'API key', apiKey: 'API key', signIn: 'Sign in', forgetKey: 'Change key',
    keyHelp: 'Enter the API key of this server. It stays in this browser tab only.',
    wrongKey: 'This API key is not valid for this server.', messages: (n) => `${n} message${n === 1 ? '' : 's'}`,
    untitled: 'New chat', deleteSession: (t) => `Delete session: ${t}`, confirmDelete: (t) => `Delete the session "${t}" and all its messages?`,
    busy: 'Server busy, retrying…', reconnecting: 'Connection lost, reconnecting…', cancelled: 'cancelled',
    failed: 'failed', completed: 'completed', approvalNeeded: (n) => `Approval needed: ${n}`, readOnly: 'read-only',
    writes: 'writes', tables: 'Tables', none: 'none', asWritten: 'As written:',
    asRun: (p) => `As it will run (data policy ${p}):`, expiresIn: (s) => `expires in ${s}`, expired: 'expired',
    approve: 'Approve', reject: 'Reject', edit: 'Edit', reason: 'Reason (optional)', statement: 'Statement',
    runEdited: 'Run edited statement', cancel: 'Cancel', approved: 'Approved', rejected: 'Rejected',
    edited: 'Edited and run', timedOut: 'Timed out (counted as rejected)', cancelledRun: 'Cancelled with the answer',
    elsewhere: ' (decided elsewhere)', sending: 'Sending…', rows: (n) => `${n} row${n === 1 ? '' : 's'}`,
    truncated: 'truncated: only the first rows are shown', copyCsv: 'Copy CSV', downloadCsv: 'Download CSV',
    copied: 'Copied', chart: 'Chart', showChart: 'Show chart', hideChart: 'Hide chart', arguments: 'Arguments', result: 'Result',
    toolCall: (n) => `Tool call: ${n}`, sortBy: (c) => `Sort by ${c}`, olderLoading: 'Loading older messages…',
    sessionGone: 'This session does not exist (any more).', error: 'Error',
    estimate: 'Estimate', aboutRows: (n) => `about ${n.toLocaleString('en-US')} row${n === 1 ? '' : 's'}`,
    rowsUnknown: 'rows not estimated', fullScan: (tables) => `full scan of ${tables}`,
    estimateUnavailable: (why) => `Estimate unavailable${why ? `: ${why}` : ''}`,
  },
  'zh-CN': {
    language: '语言', sessions: '会话', newChat: '新对话', conversation: '对话', question: '你的问题',
    placeholder: '输入问题，或 SQL 语句，例如 SELECT * FROM customers', send: '发送', stop: '停止',
    keyTitle: 'API 密钥', apiKey: 'API 密钥', signIn: '登录', forgetKey: '更换密钥',
    keyHelp: '请输入此服务器的 API 密钥。它只保存在当前浏览器标签页中。', wrongKey: '此 API 密钥对该服务器无效。',
    messages: (n) => `${n} 条消息`, untitled: '新对话', deleteSession: (t) => `删除会话：${t}`,
    confirmDelete: (t) => `删除会话“${t}”及其所有消息？`, busy: '服务器繁忙，正在重试…', reconnecting: '连接已断开，正在重连…',
    cancelled: '已取消', failed: '失败', completed: '已完成', approvalNeeded: (n) => `需要审批：${n}`, readOnly: '只读',
    writes: '写入', tables: '表', none: '无', asWritten: '原语句：',
    asRun: (p) => `实际运行（数据策略 ${p}）：`, expiresIn: (s) => `${s} 后过期`, expired: '已过期', approve: '批准',
    reject: '拒绝', edit: '编辑', reason: '理由（可选）', statement: '语句', runEdited: '运行修改后的语句', cancel: '取消',
    approved: '已批准', rejected: '已拒绝', edited: '已修改并运行', timedOut: '已超时（视为拒绝）', cancelledRun: '随回答一起取消',
    elsewhere: '（在别处决定）', sending: '发送中…', rows: (n) => `${n} 行`, truncated: '已截断：只显示前面的行',
    copyCsv: '复制 CSV', downloadCsv: '下载 CSV', copied: '已复制', chart: '图表', showChart: '显示图表', hideChart: '隐藏图表',
    arguments: '参数', result: '结果', toolCall: (n) => `工具调用：${n}`, sortBy: (c) => `按 ${c} 排序`,
    olderLoading: '正在加载更早的消息…', sessionGone: '此会话不存在（或已删除）。', error: '错误',
    estimate: '估算', aboutRows: (n) => `约 ${n.toLocaleString('zh-CN')} 行`, rowsUnknown: '行数未估算',
    fullScan: (tables) => `全表扫描：${tables}`, estimateUnavailable: (why) => `无法估算${why ? `：${why}` : ''}`,
  },
};
const STORE = 'dataagent.lang';
const saved = localStorage.getItem(STORE);
let lang = STRINGS[saved] ? saved : ((navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en');

export function t(key, ...args) {
  const value = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return typeof value === 'function' ? value(...args) : value;
}

export const currentLang = () => lang;

export function setLang(next) {
  lang = STRINGS[next] ? next : 'en';
  localStorage.setItem(STORE, lang);
  applyStatic();
}

export function applyStatic(root = document) {
  document.documentElement.lang = lang;
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of root.querySelectorAll('[data-i18n-label]')) node.setAttribute('aria-label', t(node.dataset.i18nLabel));
}
