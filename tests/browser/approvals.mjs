// The approvals flow in Chromium, run by tests/browser.rs (which starts the server and passes
// BASE_URL, the people and CHROMIUM / AXE_PATH). Exits non-zero on the first failed step, or at
// the end when any console error, CSP violation or serious/critical axe finding was seen.

import {
  BASE, approveByKeyboard, audit, expectNotice, expectStatuses, fail, finish, heading, openDocument, person, problems, signIn,
  submitRaise, watch,
} from './harness.mjs';

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
  expectStatuses([422]);
  await page.getByRole('button', { name: 'Raise and submit for approval' }).click();
  await page.getByText('Nothing was saved').waitFor();
  // `autofocus` is applied at the browser's next rendering step after load, not at once.
  const landed = await page
    .waitForFunction(() => document.activeElement && document.activeElement.id === 'title', null, { timeout: 5000 })
    .then(() => true, () => false);
  if (!landed) {
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    problems.push(`${who}: after a refused raise the focus is on ${focused}, not the title`);
  }
  await audit(page, who);
  expectStatuses([]);
  return submitRaise(p, title, lines);
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
  expectStatuses([409]);
  await tabB.page.getByRole('button', { name: 'Approve' }).click();
  await expectNotice(tabB.page, 'Someone acted on this first — here is what it looks like now.');
  await tabB.page.getByText('Waiting for finance').first().waitFor();
  await audit(tabB.page, tabB.who);
  expectStatuses([]);

  // 3. Another organisation's document, typed by hand: the not-found page.
  expectStatuses([404]);
  const r = await hod.page.goto(`${BASE}/documents/${process.env.OTHER_ORG_DOCUMENT}`);
  if (r.status() !== 404) fail(`another organisation's document answered ${r.status()}`);
  await heading(hod.page, 'Page not found');
  await audit(hod.page, hod.who);
  expectStatuses([]);

  // 4. The public security page, and signing out.
  await staff.page.goto(`${BASE}/security`);
  await staff.page.getByRole('heading', { level: 1 }).waitFor();
  await audit(staff.page, staff.who);
  await staff.page.goto(`${BASE}/`);
  await staff.page.getByRole('button', { name: 'Sign out' }).click();
  await heading(staff.page, 'Sign in to Countersign');
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
}

await finish('approvals', 15, `approvals flow: raised, approved at three levels (one by keyboard), paid; a stale tab told; a foreign URL not found`);
