// The approvals flow in Chromium, run by tests/browser.rs (which starts the server and passes
// BASE_URL, the people and CHROMIUM / AXE_PATH). Exits non-zero on the first failed step, or at
// the end when any console error, CSP violation or serious/critical axe finding was seen.
//
// axe-core is evaluated through the DevTools protocol rather than page.addScriptTag: an added
// <script> is inline script, which the pages' own CSP refuses (and which would count as a CSP
// violation here). Evaluation by the automation channel is not page script.

import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL;
const ORG = process.env.ORG;
const PASSWORD = process.env.PASSWORD;
const AXE = readFileSync(process.env.AXE_PATH, 'utf8');
const problems = [];
// HTTP statuses a step provokes on purpose (a stale form answers 409, a foreign URL 404, a wrong
// form 422): Chromium reports those responses as console errors, which are expected then only.
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
    if (m.type() === 'error' || /Content[- ]Security[- ]Policy|Refused to/i.test(text)) {
      const where = m.location() && m.location().url ? ` (${m.location().url})` : '';
      problems.push(`${who}: console ${m.type()}: ${text}${where}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
}

async function person(who) {
  const context = await browser.newContext();
  // Reports CSP violations from inside the page (securitypolicyviolation events) to the console.
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
  const { page, who } = p;
  await page.goto(`${BASE}/`);
  if (!page.url().includes('/sign-in?next=')) fail(`${who}: / did not send an anonymous visitor to sign in (${page.url()})`);
  await heading(page, 'Sign in to Countersign');
  await audit(page, who);
  await page.getByLabel('Organisation').fill(ORG);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await heading(page, 'Inbox');
  await audit(page, who);
}

async function openDocument(p, id) {
  await p.page.goto(`${BASE}/documents/${id}`);
  await p.page.getByRole('heading', { name: 'What you can do' }).waitFor();
  await audit(p.page, p.who);
}

async function expectNotice(page, text) {
  await page.getByText(text).first().waitFor({ timeout: 10000 });
}

async function approve(p, id, consequence) {
  await openDocument(p, id);
  const form = p.page.locator('form.action', { has: p.page.locator('input[name="transition"][value="approve"]') });
  if (consequence) await form.getByText(consequence).waitFor();
  await form.getByRole('button', { name: 'Approve' }).click();
  await expectNotice(p.page, 'Approved. It has moved on to the next level.');
  await audit(p.page, p.who);
}

async function raise(p, title, lines) {
  const { page, who } = p;
  await page.getByRole('link', { name: 'Raise a document' }).click();
  await heading(page, 'Raise a document');
  await audit(page, who);
  // Sent empty first: every wrong field is named, and the first gets the focus.
  expected = new Set([422]);
  await page.getByRole('button', { name: 'Raise and submit for approval' }).click();
  await page.getByText('Nothing was saved').waitFor();
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  if (focused !== 'title') problems.push(`${who}: after a refused raise the focus is on ${focused}, not the title`);
  await audit(page, who);
  expected = new Set();
  await page.getByLabel('Title', { exact: true }).fill(title);
  for (const [i, [description, amount]] of lines.entries()) {
    await page.getByLabel(`Line ${i + 1}: description`).fill(description);
    await page.getByLabel(`Line ${i + 1}: amount`).fill(amount);
  }
  await page.getByRole('button', { name: 'Raise and submit for approval' }).click();
  await expectNotice(page, 'Submitted: the head of department has it now.');
  await audit(page, who);
  const id = /\/documents\/([0-9a-f-]{36})/.exec(page.url());
  if (!id) fail(`${who}: no document id in ${page.url()}`);
  return id[1];
}

/// Tabs to the Approve button and presses Enter: the keyboard alone decides.
async function approveByKeyboard(p, id) {
  const { page, who } = p;
  await openDocument(p, id);
  await page.locator('body').focus();
  for (let i = 0; i < 80; i++) {
    await page.keyboard.press('Tab');
    const label = await page.evaluate(() => {
      const e = document.activeElement;
      return e && e.tagName === 'BUTTON' ? e.textContent.trim() : '';
    });
    if (label === 'Approve') {
      const visible = await page.evaluate(() => {
        const s = getComputedStyle(document.activeElement);
        return s.outlineStyle !== 'none' && s.outlineWidth !== '0px';
      });
      if (!visible) problems.push(`${who}: the focused Approve button shows no focus outline`);
      await page.keyboard.press('Enter');
      await expectNotice(page, 'Approved. It has moved on to the next level.');
      await audit(page, who);
      return;
    }
  }
  fail(`${who}: Approve was not reachable with Tab`);
}

try {
  const staff = await person('staff');
  const hod = await person('hod');
  const finance = await person('finance');
  const md = await person('md');
  await signIn(staff, process.env.STAFF);
  await signIn(hod, process.env.HOD);
  await signIn(finance, process.env.FINANCE);
  await signIn(md, process.env.MD);

  // 1. Staff raise; HOD by keyboard, finance, MD approve; finance pays.
  const id = await raise(staff, 'Conference travel, Lisbon', [['Flights', '1,480.00'], ['Hotel, three nights', '612.30']]);
  await hod.page.goto(`${BASE}/`);
  await hod.page.getByRole('link', { name: 'Conference travel, Lisbon' }).waitFor();
  await audit(hod.page, hod.who);
  await approveByKeyboard(hod, id);
  await approve(finance, id, 'Approve as finance — next: MD sanction.');
  await approve(md, id, 'Approve as managing director — next: payment by finance.');
  await openDocument(finance, id);
  await finance.page.getByRole('button', { name: 'Mark as paid' }).click();
  await expectNotice(finance.page, 'Marked as paid.');
  await finance.page.getByText('Paid', { exact: true }).first().waitFor();
  await audit(finance.page, finance.who);
  // The raiser sees the whole ladder with names.
  await openDocument(staff, id);
  for (const name of ['User 2', 'fin', 'md']) {
    await staff.page.locator('.ladder').getByText(name, { exact: false }).first().waitFor();
  }

  // 2. Two tabs approve the same document: one wins, the other is told.
  const second = await raise(staff, 'Office chairs', [['Six chairs', '930.00']]);
  const tabA = { page: await hod.context.newPage(), who: 'hod tab A' };
  const tabB = { page: await hod.context.newPage(), who: 'hod tab B' };
  watch(tabA.page, tabA.who);
  watch(tabB.page, tabB.who);
  await openDocument(tabA, second);
  await openDocument(tabB, second);
  await tabA.page.getByRole('button', { name: 'Approve' }).click();
  await expectNotice(tabA.page, 'Approved. It has moved on to the next level.');
  expected = new Set([409]);
  await tabB.page.getByRole('button', { name: 'Approve' }).click();
  await expectNotice(tabB.page, 'Someone acted on this first — here is what it looks like now.');
  await tabB.page.getByText('Waiting for finance').first().waitFor();
  await audit(tabB.page, tabB.who);
  expected = new Set();

  // 3. Another organisation's document, typed by hand: the not-found page.
  expected = new Set([404]);
  const r = await hod.page.goto(`${BASE}/documents/${process.env.OTHER_ORG_DOCUMENT}`);
  if (r.status() !== 404) fail(`another organisation's document answered ${r.status()}`);
  await heading(hod.page, 'Page not found');
  await audit(hod.page, hod.who);
  expected = new Set();

  // 4. The public security page, and signing out.
  await staff.page.goto(`${BASE}/security`);
  await staff.page.getByRole('heading', { level: 1 }).waitFor();
  await audit(staff.page, staff.who);
  await staff.page.goto(`${BASE}/`);
  await staff.page.getByRole('button', { name: 'Sign out' }).click();
  await heading(staff.page, 'Sign in to Countersign');
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
} finally {
  await browser.close();
}

if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
if (audited < 15) {
  console.error(`axe-core ran on only ${audited} pages`);
  process.exit(1);
}
console.log(`approvals flow: raised, approved at three levels (one by keyboard), paid; a stale tab told; a foreign URL not found; axe-core on ${audited} page views; no console errors, CSP violations or serious axe findings`);
