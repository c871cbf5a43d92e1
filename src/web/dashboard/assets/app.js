// microseg dashboard: renders the JSON API (/api/v1/...) into the page and re-renders when the
// server announces a change (server-sent events at /api/v1/events, with polling as a fallback).
// Plain DOM, no framework, no build step, no inline script or style (the CSP forbids both).
'use strict';

const PAGE = document.body.dataset.page;
const content = document.getElementById('content');
const liveEl = document.getElementById('live');
const SVG = 'http://www.w3.org/2000/svg';

// ---------- small helpers ----------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const fmtTime = (t) => {
  if (!t) return '—';
  const d = new Date(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/:00Z$/, 'Z').replace('Z', ' UTC');
};
const fmtDay = (d) => d.toISOString().slice(0, 10);
const badge = (text, cls) => h('span', { class: `badge ${cls || text}` }, text);
const appLink = (a) => h('a', { href: `/ui/applications/${encodeURIComponent(a.namespace)}/${encodeURIComponent(a.name || a.policy)}` }, a.application);
const service = (a) => a.port != null ? `${a.protocol}/${a.port}` : a.protocol;

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, options || {}));
  if (r.status === 401) {
    location.assign('/ui/login?next=' + encodeURIComponent(location.pathname + location.search));
    throw new Error('not signed in');
  }
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || `HTTP ${r.status}`);
  return body;
}

function setLive(text) { liveEl.textContent = text; }
function showError(err) {
  content.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Could not load: ${err.message}`));
}

// ---------- live updates ----------
let rendering = false;
let pending = false;
let draftsActive = () => false;
// Re-rendering replaces the DOM: keep keyboard focus on the same control (or on the one asked for).
let wantFocus = null;
function focusKey(el) {
  if (!el || el === document.body || !el.getAttribute) return null;
  for (const a of ['id', 'data-toggle', 'data-copy']) {
    const v = el.getAttribute(a);
    if (v) return `[${a}="${CSS.escape(v)}"]`;
  }
  return null;
}
async function refresh() {
  if (rendering || draftsActive()) { pending = true; return; }
  rendering = true;
  const focus = focusKey(document.activeElement);
  try { await RENDER[PAGE](); } catch (e) { showError(e); } finally { rendering = false; }
  // A control clicked while this render was under way asked for focus: it wins.
  const want = wantFocus || focus;
  wantFocus = null;
  const el = want && document.querySelector(want);
  if (el && el !== document.activeElement) el.focus();
  updateNavCount();
  if (pending) { pending = false; setTimeout(refresh, 50); }
}
async function updateNavCount() {
  try {
    const q = await api('/api/v1/alerts?state=open');
    const el = document.getElementById('nav-open');
    el.textContent = q.open > 0 ? String(q.open) : '';
  } catch (_) { /* shown by the page itself */ }
}
function connect() {
  if (!window.EventSource) { setLive('updates every 5 s'); setInterval(refresh, 5000); return; }
  const es = new EventSource('/api/v1/events');
  es.addEventListener('change', () => { setLive(`live · updated ${new Date().toLocaleTimeString()}`); refresh(); });
  es.addEventListener('error', () => { setLive('reconnecting…'); });
}

// ---------- programme ----------
const FILTERS = ['namespace', 'phase', 'criticality', 'q'];
function filterValues() {
  const p = new URLSearchParams(location.search);
  const out = {};
  for (const f of FILTERS) out[f] = p.get(f) || '';
  return out;
}
function filterForm(choices, values) {
  const select = (name, label, options) => h('label', {}, label,
    h('select', { name, id: `f-${name}`, onchange: onFilter },
      h('option', { value: '' }, 'All'),
      options.map((o) => h('option', { value: o, selected: o === values[name] }, o))));
  return h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter applications', onsubmit: (e) => { e.preventDefault(); onFilter(); } },
    select('namespace', 'Namespace', choices.namespaces),
    select('phase', 'Phase', choices.phases),
    select('criticality', 'Criticality', choices.criticalities),
    h('label', {}, 'Search', h('input', { type: 'search', name: 'q', id: 'f-q', value: values.q, placeholder: 'name, owner, window…', oninput: debounce(onFilter, 250) })),
    h('button', { type: 'button', class: 'secondary', onclick: () => { history.replaceState(null, '', location.pathname); refreshProgrammeForm = true; refresh(); } }, 'Clear'));
}
let refreshProgrammeForm = true;
function onFilter() {
  const p = new URLSearchParams();
  for (const f of FILTERS) {
    const el = document.getElementById(`f-${f}`);
    if (el && el.value) p.set(f, el.value);
  }
  const qs = p.toString();
  history.replaceState(null, '', location.pathname + (qs ? `?${qs}` : ''));
  refresh();
}
function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }

function timeline(data) {
  const waves = data.waves.filter((w) => w.schedule);
  if (!waves.length) return null;
  const now = Date.parse(data.now);
  const times = waves.flatMap((w) => [w.schedule.notifyAt, w.schedule.cleanupAt].map(Date.parse)).concat([now]);
  let min = Math.min(...times), max = Math.max(...times);
  const pad = (max - min) * 0.03 || 3600e3;
  min -= pad; max += pad;
  const W = 1000, L = 170, R = 20, rowH = 30, top = 24;
  const H = top + waves.length * rowH + 26;
  const x = (t) => L + ((Date.parse(t) - min) / (max - min)) * (W - L - R);
  const xn = L + ((now - min) / (max - min)) * (W - L - R);
  const canaryText = (sc) => (sc.canary || []).map((c, i) => `, canary step ${i + 1} (DROP for ${c.covers}) until ${fmtTime(c.until)} at the earliest`).join('');
  const desc = waves.map((w) => `${w.namespace}/${w.name}: notice ${fmtTime(w.schedule.notifyAt)}, monitor from ${fmtTime(w.schedule.monitorFrom)}, enforce ${fmtTime(w.schedule.enforceAt)}${canaryText(w.schedule)}, clean-up ${fmtTime(w.schedule.cleanupAt)}`).join('; ');
  const svg = s('svg', { class: 'timeline', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'tl-title tl-desc' },
    s('title', { id: 'tl-title' }, 'Timeline of the waves: notice, monitor, enforce, clean-up; today marked'),
    s('desc', { id: 'tl-desc' }, `Today is ${fmtTime(data.now)}. ${desc}`));
  // Axis: start, end and today.
  svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: H - 20, y2: H - 20 }));
  svg.append(s('text', { x: L, y: H - 5 }, fmtDay(new Date(min))));
  svg.append(s('text', { x: W - R, y: H - 5, 'text-anchor': 'end' }, fmtDay(new Date(max))));
  waves.forEach((w, i) => {
    const y = top + i * rowH;
    const sc = w.schedule;
    svg.append(s('text', { x: 0, y: y + 17 }, `${w.name}`));
    const seg = (cls, a, b, label) => s('rect', { class: cls, x: x(a), y: y + 4, width: Math.max(2, x(b) - x(a)), height: 18, rx: 2 }, s('title', {}, label));
    svg.append(seg('seg-notice', sc.notifyAt, sc.monitorFrom, `${w.name}: notice ${fmtTime(sc.notifyAt)}`));
    svg.append(seg('seg-monitor', sc.monitorFrom, sc.enforceAt, `${w.name}: monitor from ${fmtTime(sc.monitorFrom)}`));
    svg.append(seg('seg-enforce', sc.enforceAt, sc.cleanupAt, `${w.name}: enforce ${fmtTime(sc.enforceAt)}`));
    // Canary steps: hatched over the start of enforcement, one per step, each widening at its end.
    (sc.canary || []).forEach((c, k) => {
      svg.append(s('rect', { class: 'seg-canary', x: x(c.from), y: y + 8, width: Math.max(2, x(c.until) - x(c.from)), height: 10, rx: 1 },
        s('title', {}, `${w.name}: canary step ${k + 1}, DROP for ${c.covers}, widens no earlier than ${fmtTime(c.until)}`)));
    });
    svg.append(s('rect', { class: 'seg-cleanup', x: x(sc.cleanupAt) - 3, y: y + 2, width: 6, height: 22 }, s('title', {}, `${w.name}: clean-up ${fmtTime(sc.cleanupAt)}`)));
  });
  svg.append(s('line', { class: 'today', x1: xn, x2: xn, y1: 14, y2: H - 20 }));
  svg.append(s('text', { class: 'today-label', x: xn, y: 11, 'text-anchor': 'middle' }, 'today'));
  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
    [['seg-notice', 'notice'], ['seg-monitor', 'monitor'], ['seg-enforce', 'enforce'], ['seg-canary', 'canary steps'], ['seg-cleanup', 'clean-up'], ['today', 'today']]
      .map(([c, t]) => h('li', {}, h('span', { class: `swatch ${c}` }), t)));
  return h('div', {}, legend, svg);
}

function appTable(apps, caption) {
  return h('table', {},
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Application'), h('th', { scope: 'col' }, 'Namespace'), h('th', { scope: 'col' }, 'Criticality'),
      h('th', { scope: 'col' }, 'Phase'), h('th', { scope: 'col' }, 'Enforce at'), h('th', { scope: 'col' }, 'Next'),
      h('th', { scope: 'col', class: 'num' }, 'Open alerts'), h('th', { scope: 'col', class: 'num' }, 'Unmatched'), h('th', { scope: 'col' }, 'Synced'))),
    h('tbody', {}, apps.map((a) => h('tr', { 'data-app': `${a.namespace}/${a.name}` },
      h('td', {}, appLink(a), a.suspend ? h('span', { class: 'muted' }, ' (suspended)') : null),
      h('td', {}, a.namespace),
      h('td', {}, a.criticality),
      h('td', {}, badge(a.phase)),
      h('td', {}, fmtTime(a.schedule && a.schedule.enforceAt)),
      h('td', {}, a.nextTransition ? `${a.nextTransition.phase} ${a.nextTransition.at ? fmtTime(a.nextTransition.at) : ''}` : '—'),
      h('td', { class: 'num' }, a.openAlerts > 0 ? badge(String(a.openAlerts), 'alert') : '0'),
      h('td', { class: 'num' }, String(a.unmatchedTotal)),
      h('td', {}, badge(a.synced))))));
}

async function renderProgramme() {
  const values = filterValues();
  const data = await api('/api/v1/programme' + location.search);
  if (refreshProgrammeForm || !document.querySelector('form.filters')) {
    refreshProgrammeForm = false;
    document.getElementById('filters-slot').replaceChildren(filterForm(data.choices, values));
  }
  const phaseTotals = Object.entries(data.phases).map(([p, n]) => h('li', {}, h('strong', {}, String(n)), p));
  const body = [
    h('ul', { class: 'totals', 'aria-label': 'Totals' },
      h('li', {}, h('strong', {}, String(data.applications)), 'applications'),
      h('li', {}, h('strong', { id: 'total-open' }, String(data.openAlerts)), h('a', { href: '/ui/alerts' }, 'open alerts')),
      phaseTotals),
    timeline(data),
  ];
  if (!data.waves.length) body.push(h('p', { class: 'muted' }, 'No application matches.'));
  for (const w of data.waves) {
    const sc = w.schedule;
    const phases = Object.entries(w.phases).map(([p, n]) => `${n} ${p}`).join(', ');
    body.push(h('section', { class: 'wave', 'aria-labelledby': `wave-${w.namespace}-${w.name}`, 'data-wave': `${w.namespace}/${w.name}` },
      h('h2', { id: `wave-${w.namespace}-${w.name}` }, `Wave ${w.name}`, h('span', { class: 'muted' }, ` · ${w.namespace}`),
        w.suspend ? h('span', { class: 'muted' }, ' · suspended') : null,
        w.openAlerts > 0 ? h('span', {}, ' ', badge(`${w.openAlerts} open alerts`, 'alert')) : null),
      w.found ? h('dl', { class: 'dates' },
        [['Notice', sc.notifyAt], ['Monitor from', sc.monitorFrom], ['Enforce', sc.enforceAt], ['Clean-up', sc.cleanupAt]]
          .map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, fmtTime(v)))))
        : h('p', { class: 'error' }, `EnforcementWindow ${w.name} not found in ${w.namespace}: its applications cannot be scheduled.`),
      h('p', { class: 'muted' }, phases || 'no applications'),
      w.applications.length ? appTable(w.applications, `Applications of wave ${w.name}`) : null));
  }
  document.getElementById('programme-body').replaceChildren(...body.filter(Boolean));
}

// ---------- alerts ----------
const openPanels = new Set(); // `${key}:ack` / `${key}:rule`
const drafts = new Map(); // key -> comment draft
const alertKey = (a) => `${a.namespace}/${a.policy}/${a.id}`;
draftsActive = () => {
  const el = document.activeElement;
  return !!(el && (el.tagName === 'TEXTAREA' || el.tagName === 'INPUT') && el.closest('form.ack-form'));
};

async function copyText(text, button, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied to the clipboard.';
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents(button.closest('td').querySelector('pre'));
    const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    status.textContent = 'Selected: press Ctrl+C to copy.';
  }
}

function ruleSnippet(a) {
  const key = alertKey(a);
  const status = h('span', { role: 'status', class: 'muted', 'data-copy-status': key });
  const pre = h('pre', { 'data-rule': key, tabindex: '0', 'aria-label': `Suggested rule for ${a.source} to ${a.destination}` }, a.suggestedRule);
  const copy = h('button', { type: 'button', class: 'secondary', 'data-copy': key, onclick: (e) => copyText(a.suggestedRule, e.currentTarget, status) }, 'Copy');
  return h('div', { class: 'panel' },
    h('p', {}, 'Add this entry under ', h('code', {}, 'spec.rules'), ` of SegmentationPolicy ${a.namespace}/${a.policy} to make the flow an explicit, logged rule:`),
    pre, h('div', { class: 'actions' }, copy, status));
}

const ackId = (key) => `c-${key.replace(/[^a-zA-Z0-9]/g, '-')}`;
function ackForm(a, onDone) {
  const all = a.id === '*';
  const key = alertKey(a);
  const id = ackId(key);
  const msg = h('p', { role: 'alert', class: 'error' });
  const ta = h('textarea', { id, name: 'comment', required: true, maxlength: 1024, oninput: (e) => drafts.set(key, e.target.value) });
  ta.value = drafts.get(key) || '';
  // Recorded with the acknowledgement when signed in with the token (a proxy's user wins).
  const by = h('input', { id: `${id}-by`, name: 'by', maxlength: 128, autocomplete: 'name',
    oninput: (e) => { try { localStorage.setItem('microseg.by', e.target.value); } catch (_) { /* private mode */ } } });
  try { by.value = localStorage.getItem('microseg.by') || ''; } catch (_) { by.value = ''; }
  const form = h('form', { class: 'ack-form', 'data-ack-form': key, onsubmit: async (e) => {
    e.preventDefault();
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      await api('/api/v1/alerts/acknowledge', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(Object.assign({ namespace: a.namespace, name: a.policy, comment: ta.value, by: by.value.trim() || undefined },
          all ? { all: true } : { flowIds: [a.id] })),
      });
      drafts.delete(key); openPanels.delete(`${key}:ack`);
      setLive('acknowledged');
      if (document.activeElement) document.activeElement.blur();
      onDone();
    } catch (err) {
      msg.textContent = err.message; btn.disabled = false;
    }
  } },
  h('label', { for: id }, all ? `Why are all open flows of ${a.application} acceptable, or what will be done?`
    : `Why is ${a.source} → ${a.destination} ${service(a)} acceptable, or what will be done?`),
  ta,
  h('label', { for: `${id}-by` }, 'Your name (optional; recorded with the comment)'), by,
  msg,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, all ? 'Acknowledge all' : 'Acknowledge'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { openPanels.delete(`${key}:ack`); refresh(); } }, 'Cancel')));
  return form;
}

function alertRows(alerts, { showApp, actions }) {
  const cols = showApp ? 10 : 9;
  return alerts.flatMap((a) => {
    const key = alertKey(a);
    const toggle = (panel, label) => {
      const open = openPanels.has(`${key}:${panel}`);
      return h('button', { type: 'button', class: 'secondary', 'aria-expanded': String(open), 'data-toggle': `${panel}:${key}`,
        onclick: () => {
          if (open) openPanels.delete(`${key}:${panel}`);
          else {
            openPanels.add(`${key}:${panel}`);
            if (panel === 'ack') wantFocus = `#${CSS.escape(ackId(key))}`;
          }
          if (!wantFocus) wantFocus = `[data-toggle="${CSS.escape(`${panel}:${key}`)}"]`;
          refresh();
        } }, label);
    };
    const row = h('tr', { 'data-alert': key },
      showApp ? h('td', {}, appLink(a), h('br'), h('span', { class: 'muted' }, a.namespace)) : null,
      h('td', {}, a.direction),
      h('td', {}, h('code', {}, a.source), ' → ', h('code', {}, a.destination)),
      h('td', {}, service(a)),
      h('td', {}, a.action),
      h('td', { class: 'num' }, String(a.count)),
      h('td', {}, fmtTime(a.firstSeen)),
      h('td', {}, fmtTime(a.lastSeen)),
      h('td', {}, a.acknowledged ? h('span', {}, badge('acknowledged', 'ok'), h('br'), `${a.acknowledged.by}: “${a.acknowledged.comment}”`) : badge('open', 'alert')),
      actions ? h('td', {}, h('div', { class: 'actions' }, a.acknowledged ? null : toggle('ack', 'Acknowledge…'), toggle('rule', 'Suggest rule'))) : null);
    const extra = [];
    if (openPanels.has(`${key}:rule`)) extra.push(h('tr', { class: 'detail' }, h('td', { colspan: cols }, ruleSnippet(a))));
    if (!a.acknowledged && openPanels.has(`${key}:ack`)) extra.push(h('tr', { class: 'detail' }, h('td', { colspan: cols }, ackForm(a, refresh))));
    return [row, ...extra];
  });
}

function alertTable(alerts, opts) {
  return h('table', { id: opts.id },
    h('caption', { class: 'sr-only' }, opts.caption),
    h('thead', {}, h('tr', {},
      opts.showApp ? h('th', { scope: 'col' }, 'Application') : null,
      h('th', { scope: 'col' }, 'Direction'), h('th', { scope: 'col' }, 'Flow'), h('th', { scope: 'col' }, 'Service'),
      h('th', { scope: 'col' }, 'Action'), h('th', { scope: 'col', class: 'num' }, 'Count'), h('th', { scope: 'col' }, 'First seen'),
      h('th', { scope: 'col' }, 'Last seen'), h('th', { scope: 'col' }, 'State'), opts.actions ? h('th', { scope: 'col' }, 'Actions') : null)),
    h('tbody', {}, alertRows(alerts, opts)));
}

async function renderAlerts() {
  const state = new URLSearchParams(location.search).get('state') || 'open';
  const q = await api(`/api/v1/alerts?state=${encodeURIComponent(state)}`);
  const tabs = h('p', {}, 'Show: ', ['open', 'acknowledged', 'all'].map((st, i) => [i ? ' · ' : '',
    st === state ? h('strong', { 'aria-current': 'true' }, st) : h('a', { href: `/ui/alerts?state=${st}` }, st)]));
  const body = [
    h('p', { id: 'open-summary' }, q.open === 0 ? 'No open alerts.' : `${q.open} open alert${q.open === 1 ? '' : 's'}, newest and loudest first.`),
    tabs,
  ];
  if (q.alerts.length) body.push(alertTable(q.alerts, { id: 'alert-queue', caption: `Alerts (${state})`, showApp: true, actions: true }));
  else body.push(h('p', { class: 'muted', id: 'queue-empty' }, state === 'open' ? 'The open queue is empty.' : 'Nothing to show.'));
  for (const o of q.overflow) body.push(h('p', { class: 'muted' }, `${o.namespace}/${o.policy}: ${o.count} more open flows beyond the listed ones (“Acknowledge all” on the application page).`));
  content.replaceChildren(...body);
}

// ---------- application ----------
function chart(series, now) {
  const W = 900, H = 160, L = 40, B = 28, T = 10;
  const end = Math.floor(Date.parse(now) / 60000) * 60000;
  const minutes = 60;
  const start = end - (minutes - 1) * 60000;
  const byMinute = new Map(series.map((b) => [Math.floor(Date.parse(b.start) / 60000) * 60000, b]));
  const values = [];
  for (let t = start; t <= end; t += 60000) values.push({ t, b: byMinute.get(t) || { unmatched: 0, dropped: 0 } });
  const max = Math.max(1, ...values.map((v) => v.b.unmatched));
  const total = values.reduce((n, v) => n + v.b.unmatched, 0);
  const dropped = values.reduce((n, v) => n + v.b.dropped, 0);
  const bw = (W - L - 10) / values.length;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc' },
    s('title', { id: 'chart-title' }, 'Unmatched flows per minute, last hour'),
    s('desc', { id: 'chart-desc' }, `${total} unmatched flows (${dropped} dropped) in the last ${minutes} minutes; busiest minute ${max}.`),
    s('line', { class: 'axis', x1: L, x2: W - 10, y1: H - B, y2: H - B }),
    s('text', { x: L - 6, y: y(max) + 4, 'text-anchor': 'end' }, String(max)),
    s('text', { x: L - 6, y: H - B + 4, 'text-anchor': 'end' }, '0'),
    s('text', { x: L, y: H - 8 }, new Date(start).toISOString().slice(11, 16) + ' UTC'),
    s('text', { x: W - 10, y: H - 8, 'text-anchor': 'end' }, 'now'));
  values.forEach((v, i) => {
    if (!v.b.unmatched) return;
    const x = L + i * bw + 1;
    svg.append(s('rect', { class: 'bar-unmatched', x, y: y(v.b.unmatched), width: Math.max(1, bw - 2), height: H - B - y(v.b.unmatched) },
      s('title', {}, `${new Date(v.t).toISOString().slice(11, 16)} UTC: ${v.b.unmatched} unmatched, ${v.b.dropped} dropped`)));
    if (v.b.dropped) svg.append(s('rect', { class: 'bar-dropped', x, y: y(v.b.dropped), width: Math.max(1, bw - 2), height: H - B - y(v.b.dropped) }));
  });
  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
    h('li', {}, h('span', { class: 'swatch seg-monitor' }), 'unmatched (passed)'),
    h('li', {}, h('span', { class: 'swatch today' }), 'dropped'));
  return h('div', {}, legend, svg);
}

function kv(pairs) {
  return h('dl', { class: 'dates' }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v === null ? '—' : v))));
}

function memberText(m) {
  if (m.vmTag) return `VM tag ${m.vmTag.scope ? m.vmTag.scope + '|' : ''}${m.vmTag.tag}`;
  if (m.vmName) return m.vmName.equals ? `VM name = ${m.vmName.equals}` : `VM name starts with ${m.vmName.startsWith}`;
  if (m.ipAddress) return `IP ${m.ipAddress}`;
  if (m.nsxGroup) return `NSX group ${m.nsxGroup}`;
  return JSON.stringify(m);
}
function peerText(p) {
  if (p.application) return `application ${p.application.namespace ? p.application.namespace + '/' : ''}${p.application.name}`;
  if (p.cidr) return p.cidr;
  if (p.nsxGroup) return `group ${p.nsxGroup}`;
  if (p.any) return 'any';
  return JSON.stringify(p);
}
function portText(p) {
  if (p.nsxService) return `service ${p.nsxService}`;
  if (p.icmpType != null) return `${p.protocol} type ${p.icmpType}`;
  if (p.port != null) return `${p.protocol}/${p.port}${p.endPort ? '-' + p.endPort : ''}`;
  return p.protocol || 'any';
}

// Every open flow of the application at once, the overflow included.
function ackAll(a, open) {
  if (!open) return null;
  const target = { namespace: a.namespace, policy: a.name, application: a.application, id: '*' };
  const key = alertKey(target);
  if (!openPanels.has(`${key}:ack`)) {
    return h('p', {}, h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false',
      onclick: () => { openPanels.add(`${key}:ack`); wantFocus = `#${CSS.escape(ackId(key))}`; refresh(); } }, `Acknowledge all ${open} open…`));
  }
  return h('div', { class: 'panel' }, ackForm(target, refresh));
}

async function renderApplication() {
  const parts = location.pathname.split('/').filter(Boolean); // ui, applications, ns, name
  const ns = decodeURIComponent(parts[2] || ''), name = decodeURIComponent(parts[3] || '');
  const v = await api(`/api/v1/applications/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  const a = v.summary;
  document.getElementById('title').textContent = a.application;
  document.title = `${a.application} · microseg`;
  const ruleIds = (v.nsx && v.nsx.ruleIds) || {};
  const open = v.alerts.filter((x) => !x.acknowledged);
  const body = [
    h('p', {}, badge(a.phase), ' ', `${a.namespace}/${a.name} · ${a.criticality} · wave `, h('a', { href: `/ui/?namespace=${encodeURIComponent(a.namespace)}` }, a.window),
      a.suspend ? h('strong', {}, ' · suspended (pinned to monitor mode)') : null),
    h('div', { class: 'grid2' },
      h('section', { 'aria-labelledby': 'h-schedule' }, h('h2', { id: 'h-schedule' }, 'Schedule'),
        a.schedule ? kv([['Notice', fmtTime(a.schedule.notifyAt)], ['Monitor from', fmtTime(a.schedule.monitorFrom)], ['Enforce', fmtTime(a.schedule.enforceAt)], ['Clean-up', fmtTime(a.schedule.cleanupAt)]])
          : h('p', { class: 'muted' }, 'Not scheduled yet.'),
        a.nextTransition ? h('p', {}, `Next: ${a.nextTransition.phase} ${a.nextTransition.at ? 'at ' + fmtTime(a.nextTransition.at) : '(waiting for a gate)'}`) : null,
        v.canary ? h('p', { id: 'canary' }, h('strong', {}, 'Canary: '), `DROP on ${v.canary.summary}: ${v.canary.vms.join(', ')}; widens no earlier than ${fmtTime(v.canary.widensAt)} if the gates hold`) : null),
      h('section', { 'aria-labelledby': 'h-owners' }, h('h2', { id: 'h-owners' }, 'Owners'),
        h('ul', {}, v.owners.map((o) => h('li', {}, o.name, o.email ? ` <${o.email}>` : '', o.webhook ? ' · webhook' : ''))))),
    h('section', { 'aria-labelledby': 'h-conditions' }, h('h2', { id: 'h-conditions' }, 'Conditions'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Type', 'Status', 'Reason', 'Message', 'Since'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, v.conditions.map((c) => h('tr', {}, h('td', {}, c.type), h('td', {}, badge(c.status)), h('td', {}, c.reason), h('td', {}, c.message), h('td', {}, fmtTime(c.lastTransitionTime))))))),
    h('section', { 'aria-labelledby': 'h-alerts' }, h('h2', { id: 'h-alerts' }, `Alerts (${open.length} open)`),
      h('h3', {}, 'Unmatched flows per minute'), chart(v.monitor.series, v.now),
      kv([['Unmatched total', String(v.monitor.unmatchedTotal)], ['Healthy (explicit rules)', String(v.monitor.healthyTotal)], ['Last log line', fmtTime(v.monitor.lastLogAt)], ['Not listed', String(v.monitor.overflow)]]),
      v.alerts.length ? alertTable(v.alerts, { id: 'app-alerts', caption: 'Alerts of this application', showApp: false, actions: true }) : h('p', { class: 'muted' }, 'No unmatched flow recorded.'),
      ackAll(a, v.monitor.openAlerts)),
    h('section', { 'aria-labelledby': 'h-would-drop' }, h('h2', { id: 'h-would-drop' }, `Dropped at enforcement (${v.wouldDrop.length})`),
      v.wouldDrop.length
        ? h('table', { id: 'would-drop' }, h('caption', {}, 'Recorded flows the current rules would drop when the catch-all turns to DROP'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Flow'), h('th', { scope: 'col', class: 'num' }, 'Seen'), h('th', { scope: 'col' }, 'Last seen'), h('th', { scope: 'col' }, 'Dropped by'))),
          h('tbody', {}, v.wouldDrop.map((d) => h('tr', {}, h('td', {}, d.flow), h('td', { class: 'num' }, String(d.count)), h('td', {}, d.lastSeen), h('td', {}, d.by)))))
        : h('p', { class: 'muted' }, 'No recorded flow would be dropped at enforcement.')),
    h('section', { 'aria-labelledby': 'h-members' }, h('h2', { id: 'h-members' }, 'Members'),
      h('ul', {}, v.members.map((m) => h('li', {}, memberText(m))))),
    h('section', { 'aria-labelledby': 'h-rules' }, h('h2', { id: 'h-rules' }, 'Rules'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Direction', 'Peers', 'Ports', 'Action', 'Logged', 'NSX rule id'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {},
          v.rules.map((r) => h('tr', {}, h('td', {}, h('code', {}, r.name)), h('td', {}, r.direction), h('td', {}, r.peers.map(peerText).join(', ')),
            h('td', {}, r.ports.length ? r.ports.map(portText).join(', ') : 'any'), h('td', {}, r.action), h('td', {}, r.logged ? 'yes' : 'no'),
            h('td', {}, ruleIds[r.name] != null ? String(ruleIds[r.name]) : '—'))),
          Object.entries(v.catchAll).filter(([, on]) => on).map(([dir]) => {
            const id = dir === 'inbound' ? 'catchall_in' : 'catchall_out';
            return h('tr', {}, h('td', {}, h('code', {}, id)), h('td', {}, dir === 'inbound' ? 'Inbound' : 'Outbound'), h('td', {}, 'any'), h('td', {}, 'any'),
              h('td', {}, 'catch-all (per phase)'), h('td', {}, 'yes'), h('td', {}, ruleIds[id] != null ? String(ruleIds[id]) : '—'));
          })))),
    h('section', { 'aria-labelledby': 'h-nsx' }, h('h2', { id: 'h-nsx' }, 'NSX'),
      v.nsx ? kv([['Security policy', h('code', {}, v.nsx.policyPath || '—')], ['Group', h('code', {}, v.nsx.groupPath || '—')], ['Revision', v.nsx.revision != null ? String(v.nsx.revision) : '—'], ['Last sync', fmtTime(v.nsx.lastSyncTime)]])
        : h('p', { class: 'muted' }, 'Nothing written to NSX yet.'),
      h('p', { class: 'muted' }, `After clean-up: ${v.afterCleanup}.`)),
    h('div', { class: 'grid2' },
      h('section', { 'aria-labelledby': 'h-history' }, h('h2', { id: 'h-history' }, 'History'),
        v.history.length ? h('ol', {}, v.history.map((e) => h('li', {}, `${fmtTime(e.at)}: `, badge(e.phase), ` ${e.reason}${e.message ? ' — ' + e.message : ''}`))) : h('p', { class: 'muted' }, 'No phase change yet.')),
      h('section', { 'aria-labelledby': 'h-notices' }, h('h2', { id: 'h-notices' }, 'Notifications sent'),
        v.notifications.length ? h('ul', {}, v.notifications.map((n) => h('li', {}, `${fmtTime(n.sentAt)}: ${n.kind} to ${n.owner} by ${n.channel}`))) : h('p', { class: 'muted' }, 'None yet.'))),
  ];
  content.replaceChildren(...body);
}

const RENDER = {
  programme: async () => {
    if (!document.getElementById('programme-body')) {
      content.replaceChildren(h('div', { id: 'filters-slot' }), h('div', { id: 'programme-body', 'aria-live': 'off' }));
      refreshProgrammeForm = true;
    }
    await renderProgramme();
  },
  alerts: renderAlerts,
  application: renderApplication,
};

document.querySelectorAll('[data-nav]').forEach((a) => {
  if (a.dataset.nav === PAGE) a.setAttribute('aria-current', 'page');
});
if (RENDER[PAGE]) {
  refresh();
  connect();
  // Drafts being typed hold a refresh back; pick it up once the typing stops.
  setInterval(() => { if (pending && !draftsActive() && !rendering) { pending = false; refresh(); } }, 1000);
}
