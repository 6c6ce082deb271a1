// What every browser flow shares (tests/browser.rs runs the flows with BASE_URL, ORG, PASSWORD,
// CHROMIUM and AXE_PATH): Debian's Chromium through playwright-core, one context per person, and
// the three things every page must pass — no console error, no CSP violation (reported from the
// page's securitypolicyviolation events), no serious or critical axe-core finding.
//
// axe-core is evaluated through the DevTools protocol rather than page.addScriptTag: an added
// <script> is inline script, which the pages' own CSP refuses (and which would count as a CSP
// violation here). Evaluation by the automation channel is not page script.

import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const BASE = process.env.BASE_URL;
export const ORG = process.env.ORG;
export const PASSWORD = process.env.PASSWORD;
const AXE = readFileSync(process.env.AXE_PATH, 'utf8');

/** Everything wrong seen so far; the flow fails at the end when it is not empty. */
export const problems = [];
// HTTP statuses a step provokes on purpose (a stale form answers 409, a foreign URL 404, a wrong
// form 422, staff on an admin page 403): Chromium reports those responses as console errors,
// which are expected during that step only.
let expected = new Set();
let audited = 0;

/** The statuses the next step provokes on purpose (none: `expectStatuses([])`). */
export function expectStatuses(statuses) {
  expected = new Set(statuses);
}

export const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking'],
  headless: true,
});

export function fail(message) {
  throw new Error(message);
}

export function watch(page, who) {
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

/** A person in a browser context of their own. */
export async function person(who) {
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

/** Runs axe-core on the page as it is now. */
export async function audit(page, who) {
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

export async function heading(page, text) {
  await page.getByRole('heading', { level: 1, name: text }).waitFor({ timeout: 10000 });
}

export async function expectNotice(page, text) {
  await page.getByText(text).first().waitFor({ timeout: 10000 });
}

/** Signs `p` in through the sign-in page (an anonymous `/` must send them there) to the inbox. */
export async function signIn(p, email) {
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

export async function openDocument(p, id) {
  await p.page.goto(`${BASE}/documents/${id}`);
  await p.page.getByRole('heading', { name: 'What you can do' }).waitFor();
  await audit(p.page, p.who);
}

/** Fills the open raise form's title and lines, submits it, and returns the new document's id. */
export async function submitRaise(p, title, lines) {
  const { page, who } = p;
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

/**
 * Tabs to the Approve button of document `id` (opened first when given; else the page open now)
 * and presses Enter: the keyboard alone decides, and the focused button must show its outline.
 */
export async function approveByKeyboard(p, id) {
  const { page, who } = p;
  if (id) await openDocument(p, id);
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

/** Closes the browser and exits non-zero when anything went wrong or too few pages were checked. */
export async function finish(flow, minimumAudited, summary) {
  await browser.close();
  if (problems.length > 0) {
    console.error(problems.join('\n'));
    process.exit(1);
  }
  if (audited < minimumAudited) {
    console.error(`${flow}: axe-core ran on only ${audited} pages`);
    process.exit(1);
  }
  console.log(`${summary}; axe-core on ${audited} page views; no console errors, CSP violations or serious axe findings`);
}
