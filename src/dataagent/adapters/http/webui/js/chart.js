// Vega-Lite charts with the vendored libraries, loaded on first use; CSP-safe: no eval (the AST interpreter).
const LIBS = ['vega.min.js', 'vega-lite.min.js', 'vega-interpreter.min.js', 'vega-embed.min.js'];
let loading = null;

function loadScript(name) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = `/ui/vendor/${name}`;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${name}`));
    document.head.append(script);
  });
}

function loadVega() {
  loading ??= LIBS.reduce((chain, name) => chain.then(() => loadScript(name)), Promise.resolve());
  return loading;
}

// Only inline data: a spec whose data (at any level) points at a URL is not drawn (the server never sends one).
function inlineOnly(node) {
  if (Array.isArray(node)) return node.every(inlineOnly);
  if (!node || typeof node !== 'object') return true;
  if (node.data && typeof node.data === 'object' && 'url' in node.data) return false;
  return Object.entries(node).every(([key, value]) => key === 'values' || inlineOnly(value));
}

export async function renderChart(target, spec) {
  if (!inlineOnly(spec)) throw new Error('chart refused: data must be inline');
  await loadVega();
  const view = await window.vegaEmbed(target, spec, {
    renderer: 'svg', actions: false, ast: true, expr: window.vega.expressionInterpreter, defaultStyle: false,
  });
  target.dataset.rendered = 'true';
  return view;
}
