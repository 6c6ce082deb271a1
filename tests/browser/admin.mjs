// The administration pages in Chromium, run by tests/browser.rs (which starts the server and
// passes BASE_URL, the people and CHROMIUM / AXE_PATH), the same harness as approvals.mjs: an
// admin approves a pending joiner and changes a member's role, and the member's open page is
// signed out on its next request; staff are refused the members page; the audit trail shows the
// change; my account starts an authenticator enrolment (the QR code is an image data URI). Exits
// non-zero on the first failed step, or at the end when any console error, CSP violation or
// serious/critical axe finding was seen on any page visited.
//
// axe-core is evaluated through the DevTools protocol rather than page.addScriptTag (an added
// <script> is inline script, which the pages' CSP refuses).

import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL;
const ORG = process.env.ORG;
const PASSWORD = process.env.PASSWORD;
const AXE = readFileSync(process.env.AXE_PATH, 'utf8');
const problems = [];
// HTTP statuses a step provokes on purpose (a form without a reason answers 422, staff opening
// the members page 403): Chromium reports those responses as console errors, expected then only.
let expected = new Set();
let audited = 0;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking'],
  headless: true,
});

function fail(message) {
  throw new Error(message);
}

function watch(page, who) {
  page.on('console', (m) => {
    const text = m.text();
    const status = /the server responded with a status of (\d{3})/.exec(text);
    if (status && expected.has(Number(status[1]))) return;
    // The server has no favicon yet (UI-1's static files): Chromium's own request for it is not
    // the page's doing. Any other 404 still counts.
    if (status && status[1] === '404' && m.location() && /\/favicon\.ico$/.test(m.location().url || '')) return;
    if (m.type() === 'error' || /Content[- ]Security[- ]Policy|Refused to/i.test(text)) {
      const where = m.location() && m.location().url ? ` (${m.location().url})` : '';
      problems.push(`${who}: console ${m.type()}: ${text}${where}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
}

async function person(who) {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  const page = await context.newPage();
  watch(page, who);
  return { context, page, who };
}

async function audit(page, who) {
  await page.waitForLoadState('load');
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  });
  audited += 1;
  for (const v of violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      problems.push(`${who}: axe ${v.impact} ${v.id} on ${page.url()}: ${v.help} (${v.nodes.join(', ')})`);
    }
  }
}

async function heading(page, text) {
  await page.getByRole('heading', { level: 1, name: text }).waitFor({ timeout: 10000 });
}

async function signIn(p, email) {
  const { page } = p;
  await page.goto(`${BASE}/`);
  await heading(page, 'Sign in to Countersign');
  await page.getByLabel('Organisation').fill(ORG);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await heading(page, 'Inbox');
}

async function expectNotice(page, text) {
  await page.getByText(text).first().waitFor({ timeout: 10000 });
}

try {
  const admin = await person('admin');
  const staff = await person('staff');
  await signIn(admin, process.env.ADMIN);
  await signIn(staff, process.env.STAFF);
  await audit(staff.page, staff.who);

  // Staff are not offered the members page, and opening it anyway is the 403 page.
  if (await staff.page.getByRole('link', { name: 'Members' }).count()) fail('staff were offered the members page');
  expected = new Set([403]);
  const refused = await staff.page.goto(`${BASE}/members`);
  if (refused.status() !== 403) fail(`staff opening /members got ${refused.status()}`);
  await heading(staff.page, 'You may not do this');
  await audit(staff.page, staff.who);
  expected = new Set();
  await staff.page.goto(`${BASE}/`);
  await heading(staff.page, 'Inbox');

  // The admin approves the pending joiner with a role.
  await admin.page.getByRole('link', { name: 'Members' }).click();
  await heading(admin.page, 'Members');
  await audit(admin.page, admin.who);
  const joiner = process.env.JOINER_NAME;
  await admin.page.getByLabel('Role').first().selectOption('finance');
  await admin.page.getByRole('button', { name: `Approve ${joiner}` }).click();
  await expectNotice(admin.page, 'Approved: they are a member now and can sign in.');
  await admin.page.getByRole('row', { name: new RegExp(joiner) }).getByText('Finance').waitFor();
  await audit(admin.page, admin.who);

  // The admin changes the staff member's role; without a reason first: refused under the field,
  // which has the focus.
  await admin.page.getByRole('link', { name: process.env.STAFF_NAME, exact: true }).click();
  await heading(admin.page, process.env.STAFF_NAME);
  await audit(admin.page, admin.who);
  await admin.page.getByLabel('New role').selectOption('hod');
  expected = new Set([422]);
  await admin.page.getByRole('button', { name: 'Change role' }).click();
  await expectNotice(admin.page, 'Give a reason of 3 to 200 characters');
  // htmx moves the focus to the `autofocus` field when the swapped page settles.
  await admin.page
    .waitForFunction(() => document.activeElement && document.activeElement.id === 'role-reason', null, { timeout: 3000 })
    .catch(async () => {
      const focused = await admin.page.evaluate(() => document.activeElement && document.activeElement.id);
      fail(`the reason field should have the focus, not ${focused}`);
    });
  await audit(admin.page, admin.who);
  expected = new Set();
  await admin.page.getByLabel('New role').selectOption('hod');
  await admin.page.getByLabel('Reason (recorded in the audit trail)').first().fill('Runs Operations from Monday');
  await admin.page.getByRole('button', { name: 'Change role' }).click();
  await expectNotice(admin.page, 'Role changed.');
  await audit(admin.page, admin.who);

  // The member's open page: its next request is signed out.
  await staff.page.getByRole('link', { name: 'Documents' }).click();
  await heading(staff.page, 'Sign in to Countersign');
  await audit(staff.page, staff.who);

  // The audit trail shows the change and its reason.
  await admin.page.getByRole('link', { name: 'Audit' }).click();
  await heading(admin.page, 'Audit trail');
  await admin.page.getByText('Intact').or(admin.page.getByText('Not yet verified')).first().waitFor();
  await audit(admin.page, admin.who);
  await admin.page.getByLabel('Action').fill('membership.role_changed');
  await admin.page.getByRole('button', { name: 'Show events' }).click();
  await admin.page.getByRole('cell', { name: 'Runs Operations from Monday' }).waitFor();
  await audit(admin.page, admin.who);

  // Settings and API keys: forms with their labels, axe-clean.
  await admin.page.getByRole('link', { name: 'Settings', exact: true }).click();
  await heading(admin.page, 'Settings');
  await audit(admin.page, admin.who);
  await admin.page.getByRole('link', { name: 'API keys', exact: true }).first().click();
  await heading(admin.page, 'API keys');
  await admin.page.getByLabel('Name', { exact: true }).fill('Nightly export');
  await admin.page.getByRole('button', { name: 'Make the key' }).click();
  await expectNotice(admin.page, 'shown only this once');
  await audit(admin.page, admin.who);

  // My account: sessions, and an authenticator enrolment with its QR image.
  await admin.page.getByRole('link', { name: 'My account' }).click();
  await heading(admin.page, 'My account');
  await audit(admin.page, admin.who);
  await admin.page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const qr = admin.page.getByRole('img', { name: 'QR code to add Countersign to your authenticator app' });
  await qr.waitFor();
  const loaded = await qr.evaluate((img) => img.complete && img.naturalWidth > 0);
  if (!loaded) fail('the QR code image did not load');
  await audit(admin.page, admin.who);
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
} finally {
  await browser.close();
}

if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
if (audited < 14) {
  console.error(`axe-core ran on only ${audited} pages`);
  process.exit(1);
}
console.log(`admin flow: a joiner approved, a role changed (its member signed out on the next request), staff refused, the change in the audit trail, settings and a new API key, an authenticator enrolment started; axe-core on ${audited} page views; no console errors, CSP violations or serious axe findings`);
