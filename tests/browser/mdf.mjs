// Market development funds in Chromium, run by tests/browser.rs (BASE_URL, ORG, PASSWORD, ALICE:
// a partner admin of partner A with a 2026-Q4 budget, BOB: partner B's, CHANNEL: a channel
// manager, FINANCE, CHROMIUM, AXE_PATH), on the shared harness: the partner requests funds, the
// channel manager approves (the partner sees no decision form), the partner files a claim and
// attaches a proof file through the form, finance approves it on its proof and pays it, the
// partner sees it paid, and partner B sees none of it. Exits non-zero on the first failed step, or
// at the end when any console error, CSP violation or serious/critical axe finding was seen.

import {
  BASE, ORG, PASSWORD, audit, expectNotice, fail, finish, heading, person,
} from './harness.mjs';

const ACTIVITY = 'Launch webinar for 40 customers';
const DONE = 'Webinar held on 3 December, 41 attendees';

function pdf(size) {
  let s = '%PDF-1.4\n';
  let i = 0;
  while (s.length < size) s += `% attendee ${i++} of the webinar\n`;
  return Buffer.from(s.slice(0, size), 'latin1');
}

/** Signs `p` in from the MDF page (sent to sign in, then back to it). */
async function signIn(p, email) {
  const { page, who } = p;
  await page.goto(`${BASE}/programme/mdf`);
  await heading(page, 'Sign in to Countersign');
  await page.getByLabel('Organisation').fill(ORG);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('load');
  if (!page.url().endsWith('/programme/mdf')) await page.goto(`${BASE}/programme/mdf`);
  await heading(page, 'Market development funds');
  await audit(page, who);
}

function row(page, text) {
  return page.locator('tr', { hasText: text });
}

const alice = await person('partner A');
await signIn(alice, process.env.ALICE);
{
  const { page, who } = alice;
  const option = page.locator('#request-budget option', { hasText: '2026-Q4' });
  await page.getByLabel('From the budget').selectOption(await option.getAttribute('value'));
  await page.getByLabel('Activity').fill(ACTIVITY);
  await page.getByLabel('Amount', { exact: true }).first().fill('600.00');
  await page.getByRole('button', { name: 'Send the request' }).click();
  await expectNotice(page, 'Your request is with the channel manager.');
  await audit(page, who);
  if (await row(page, ACTIVITY).getByRole('button', { name: 'Approve request' }).count() > 0) {
    fail(`${who}: the requester is offered a decision form`);
  }
}

const channel = await person('channel manager');
await signIn(channel, process.env.CHANNEL);
{
  const { page, who } = channel;
  const r = row(page, ACTIVITY);
  await r.getByLabel('Reason (needed to reject)').fill('Fits the Q4 plan');
  await r.getByRole('button', { name: 'Approve request' }).click();
  await expectNotice(page, 'Approved: the amount is committed from the partner');
  await audit(page, who);
}

{
  const { page, who } = alice;
  await page.goto(`${BASE}/programme/mdf`);
  await heading(page, 'Market development funds');
  const option = page.locator('#claim-request option', { hasText: ACTIVITY });
  await page.getByLabel('Against the request').selectOption(await option.getAttribute('value'));
  await page.locator('#claim-amount').fill('550.00');
  await page.getByLabel('What was done').fill(DONE);
  await page.getByRole('button', { name: 'File the claim' }).click();
  await expectNotice(page, 'Your claim is filed.');
  await audit(page, who);
  const r = row(page, DONE);
  await r.locator('input[type=file]').setInputFiles({ name: 'attendees.pdf', mimeType: 'application/pdf', buffer: pdf(20000) });
  await r.getByRole('button', { name: 'Attach proof' }).click();
  await expectNotice(page, 'The proof file is attached.');
  await row(page, DONE).getByRole('link', { name: 'attendees.pdf' }).waitFor();
  await audit(page, who);
}

const finance = await person('finance');
await signIn(finance, process.env.FINANCE);
{
  const { page, who } = finance;
  if (await row(page, ACTIVITY).getByRole('button', { name: 'Approve request' }).count() > 0) {
    fail(`${who}: finance is offered a request decision`);
  }
  await row(page, DONE).getByRole('button', { name: 'Approve claim' }).click();
  await expectNotice(page, 'The claim is approved; it can now be paid.');
  await audit(page, who);
  await row(page, DONE).getByRole('button', { name: 'Mark paid' }).click();
  await expectNotice(page, 'The claim is paid.');
  await audit(page, who);
}

{
  const { page, who } = alice;
  await page.goto(`${BASE}/programme/mdf`);
  await row(page, DONE).getByText('Paid', { exact: true }).waitFor();
  await audit(page, who);
}

const bob = await person('partner B');
await signIn(bob, process.env.BOB);
{
  const { page, who } = bob;
  const text = await page.locator('main').innerText();
  if (text.includes(ACTIVITY) || text.includes(DONE) || text.includes('2026-Q4')) fail(`${who}: sees partner A's MDF`);
}

await finish('mdf', 9, 'mdf: requested, approved, claimed with proof, approved and paid; partner B saw none of it');
