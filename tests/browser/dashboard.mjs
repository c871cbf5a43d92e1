// Browser test of the microseg dashboard in headless Chromium (driven by tests/it/e2e_dashboard.rs).
//
// Talks to the Rust test over stdio: prints `STEP <name>` and waits for a `go` line on stdin
// before going on (the test injects DFW log lines or applies the suggested rule meanwhile), prints
// `YAML <json string>` with the suggested rule as the page showed and copied it, and `DONE` at the
// end. Any failed expectation exits non-zero with the reason on stderr.
//
// Environment: DASHBOARD_URL, DASHBOARD_TOKEN, NAMESPACE, POLICY, APPLICATION, WAVE,
// FLOW_SOURCE (the source address of the loudest injected flow), SCREENSHOT_DIR.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`dashboard.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
}
const BASE = env('DASHBOARD_URL');
const TOKEN = env('DASHBOARD_TOKEN');
const NS = env('NAMESPACE');
const POLICY = env('POLICY');
const APP = env('APPLICATION');
const WAVE = env('WAVE');
const SOURCE = env('FLOW_SOURCE');
const SHOTS = env('SCREENSHOT_DIR');
const COMMENT = 'Nightly backup from the storage VLAN; rule follows in the next release';
const ACKER = 'Alice Example';
const TIMEOUT = 30_000;

const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function step(name) {
  console.log(`STEP ${name}`);
  const { value, done } = await input.next();
  if (done || value.trim() !== 'go') throw new Error(`step ${name}: the test answered ${JSON.stringify(value)}`);
}
function expect(cond, what) {
  if (!cond) throw new Error(`expected: ${what}`);
}

fs.mkdirSync(SHOTS, { recursive: true });
fs.rmSync(path.join(SHOTS, 'failure.png'), { force: true });
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'microseg-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1366, height: 860 },
});
let failed = null;
let page = null;
const consoleErrors = [];
const consoleAll = [];
try {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => { consoleAll.push(`${m.type()}: ${m.text()}`); if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  // Sign in: a page without a session goes to the login form, then back.
  await page.goto(`${BASE}/ui/`);
  expect(page.url().includes('/ui/login'), `redirect to the login form, got ${page.url()}`);
  await page.getByLabel('Dashboard token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#login-error').waitFor();
  await page.getByLabel('Dashboard token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${BASE}/ui/`);
  consoleErrors.length = 0; // the refused sign-in above logs its 401

  // Programme: the wave with the application, the timeline with today marked.
  const wave = page.locator(`section[data-wave="${NS}/${WAVE}"]`);
  await wave.waitFor();
  await wave.getByRole('link', { name: APP }).waitFor();
  expect(await wave.locator('.badge', { hasText: 'Monitoring' }).count() >= 1, 'the application is shown Monitoring');
  const timeline = page.locator('svg.timeline');
  await timeline.waitFor();
  expect((await timeline.locator('text.today-label').textContent()) === 'today', 'today is marked on the timeline');
  expect((await timeline.locator('desc').textContent()).includes(WAVE), 'the timeline describes the wave');
  // Filters: a phase nobody is in hides the wave; Clear brings it back. Search by owner finds it.
  await page.locator('#f-phase').selectOption('Completed');
  await page.getByText('No application matches.').waitFor();
  expect(new URL(page.url()).searchParams.get('phase') === 'Completed', 'filters are kept in the URL');
  await page.getByRole('button', { name: 'Clear' }).click();
  await wave.waitFor();
  await page.locator('#f-q').fill('web team');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('q') === 'web team');
  await wave.waitFor();
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.screenshot({ path: path.join(SHOTS, 'programme.png'), fullPage: true });

  // Alerts: empty, then the injected flows appear without a reload.
  await page.getByRole('link', { name: /^Alerts/ }).click();
  await page.waitForURL(`${BASE}/ui/alerts`);
  await page.locator('#queue-empty').waitFor();
  await page.evaluate(() => { window.__notReloaded = true; });
  await step('inject');
  const rows = page.locator('#alert-queue tbody tr[data-alert]');
  await rows.first().waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#alert-queue tbody tr[data-alert]').length >= 2);
  expect(await page.evaluate(() => window.__notReloaded === true), 'the alerts appeared without a reload');
  const first = rows.first();
  expect((await first.textContent()).includes(SOURCE), `the loudest flow (from ${SOURCE}) is listed first`);
  await page.locator('#nav-open', { hasText: /^2$/ }).waitFor();
  const key = await first.getAttribute('data-alert');

  // Suggest rule: the YAML snippet, copied to the clipboard.
  await first.getByRole('button', { name: 'Suggest rule' }).click();
  const pre = page.locator(`pre[data-rule="${key}"]`);
  await pre.waitFor();
  expect(await page.evaluate(() => (document.activeElement.dataset.toggle || '').startsWith('rule:')),
    'keyboard focus stays on the toggle after the live re-render');
  const yaml = await pre.textContent();
  expect(yaml.includes('logged: true'), `the suggested rule is logged: ${yaml}`);
  await page.locator(`button[data-copy="${key}"]`).click();
  await page.locator(`[data-copy-status="${key}"]`, { hasText: 'Copied' }).waitFor();
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  expect(clip === yaml, `the clipboard holds the snippet, got ${JSON.stringify(clip)}`);
  await page.screenshot({ path: path.join(SHOTS, 'alerts.png'), fullPage: true });

  // Acknowledge with a comment, using the keyboard: it leaves the open queue.
  await first.getByRole('button', { name: 'Acknowledge…' }).click();
  const form = page.locator(`form[data-ack-form="${key}"]`);
  await form.waitFor();
  await page.waitForFunction(() => document.activeElement && document.activeElement.name === 'comment');
  await form.getByRole('button', { name: 'Acknowledge' }).click();
  expect(await form.locator('textarea').evaluate((t) => !t.validity.valid), 'an empty comment is refused');
  await form.locator('textarea').fill(COMMENT);
  await form.getByLabel('Your name').fill(ACKER);
  await form.getByLabel('Your name').press('Tab');
  await page.keyboard.press('Enter');
  await page.locator(`tr[data-alert="${key}"]`).waitFor({ state: 'detached' });
  await page.waitForFunction(() => document.querySelectorAll('#alert-queue tbody tr[data-alert]').length === 1);
  await page.locator('#open-summary', { hasText: '1 open alert' }).waitFor();
  expect(await page.evaluate(() => window.__notReloaded === true), 'acknowledging did not reload the page');
  await page.goto(`${BASE}/ui/alerts?state=acknowledged`);
  await page.locator(`tr[data-alert="${key}"]`, { hasText: COMMENT }).waitFor();
  console.log(`YAML ${JSON.stringify(yaml)}`);

  // Application page: members, rules with NSX ids, conditions, chart, the acknowledged alert.
  await page.goto(`${BASE}/ui/applications/${NS}/${POLICY}`);
  await page.getByRole('heading', { name: APP, level: 1 }).waitFor();
  await page.locator('#app-alerts').waitFor();
  await page.locator('svg.chart rect.bar-unmatched').first().waitFor();
  for (const h of ['Schedule', 'Owners', 'Conditions', 'Members', 'Rules', 'NSX', 'History', 'Notifications sent']) {
    await page.getByRole('heading', { name: h, level: 2 }).waitFor();
  }
  await page.getByRole('cell', { name: 'catchall_in', exact: true }).waitFor();
  await page.evaluate(() => { window.__notReloaded = true; });

  // The suggested rule is applied by the test; the page shows it with its NSX rule id and the
  // healthy count growing, without a reload.
  const ruleName = yaml.match(/- name: (\S+)/)[1];
  await step('applied');
  const ruleRow = page.locator('tr', { has: page.getByRole('cell', { name: ruleName, exact: true }) });
  await ruleRow.waitFor();
  await page.waitForFunction((name) => {
    const row = [...document.querySelectorAll('tr')].find((r) => r.cells[0] && r.cells[0].textContent === name);
    return row && /^\d+$/.test(row.cells[row.cells.length - 1].textContent);
  }, ruleName);
  await page.waitForFunction(() => {
    const dt = [...document.querySelectorAll('dt')].find((d) => d.textContent === 'Healthy (explicit rules)');
    return dt && Number(dt.nextElementSibling.textContent) >= 1;
  });
  expect(await page.evaluate(() => window.__notReloaded === true), 'the application page updated without a reload');
  await page.screenshot({ path: path.join(SHOTS, 'application.png'), fullPage: true });

  // Keyboard: the skip link is the first stop and every control has a visible name.
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement.textContent) === 'Skip to content', 'the skip link comes first');
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, input, select, textarea')]
    .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.textContent.trim() && !e.getAttribute('aria-label')).length);
  expect(unnamed === 0, `${unnamed} controls without a name`);

  // Acknowledge all that is still open (the other flow) from the application page.
  await page.getByRole('button', { name: 'Acknowledge all 1 open…' }).click();
  const allForm = page.locator('form.ack-form');
  await allForm.locator('textarea').fill('Reviewed with the web team');
  await allForm.getByRole('button', { name: 'Acknowledge all' }).click();
  await page.getByRole('heading', { name: 'Alerts (0 open)', level: 2 }).waitFor();
  await page.waitForFunction(() => document.getElementById('nav-open').textContent === '');
  expect(consoleErrors.length === 0, `no console errors, got ${JSON.stringify(consoleErrors)}`);
  console.log('DONE');
} catch (e) {
  failed = e;
  if (page) {
    try {
      await page.screenshot({ path: path.join(SHOTS, 'failure.png'), fullPage: true });
      console.error(`dashboard.mjs: failed on ${page.url()}; live: ${await page.locator('#live').textContent().catch(() => '?')}`);
      console.error(`dashboard.mjs: console: ${JSON.stringify(consoleAll.slice(-20))}`);
      console.error(`dashboard.mjs: content: ${(await page.locator('#content').innerHTML().catch(() => '?')).slice(0, 2000)}`);
    } catch (_) { /* the failure itself is reported below */ }
  }
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
if (failed) {
  console.error(`dashboard.mjs: ${failed.stack || failed}`);
  process.exit(1);
}
