// The vendor portal in Chromium, run by tests/browser.rs (BASE_URL, ORG, PASSWORD, ADMIN, STAFF,
// PO: a purchase order of STAFF's, CHROMIUM, AXE_PATH), on the shared harness: the admin adds a
// vendor, shares the PO with it, makes a portal link for its person and asks the vendor a
// question on the document page; the vendor opens the link in a browser of their own (the page
// consumes nothing until its button is pressed), sees the waiting question on the portal home,
// CLICKS THROUGH to the PO (an htmx-boosted navigation, not a fresh page load: the upload script
// must still take over the form), uploads an invoice with the progress bar and answers the
// question with a file; the staff member sees the invoice and the answer on the document; the
// same link opened again is refused in words. Exits non-zero on the first failed step, or at the
// end when any console error, CSP violation or serious/critical axe finding was seen.

import {
  BASE, audit, expectNotice, expectStatuses, fail, finish, heading, person, problems, signIn,
} from './harness.mjs';

function pdf(size) {
  let s = '%PDF-1.4\n';
  let i = 0;
  while (s.length < size) s += `% line ${i++} of invoice 2026-117 for the chairs\n`;
  return Buffer.from(s.slice(0, size), 'latin1');
}

try {
  const po = process.env.PO;
  const admin = await person('admin');
  await signIn(admin, process.env.ADMIN);
  const { page } = admin;

  // 1. The admin adds a vendor, shares the PO, makes a link.
  await page.getByRole('link', { name: 'Vendors and clients' }).click();
  await heading(page, 'Vendors and clients');
  await audit(page, admin.who);
  await page.getByLabel('Company name').fill('Chair Makers Ltd');
  await page.getByLabel('They are').selectOption('vendor');
  await page.getByRole('button', { name: 'Add' }).click();
  await heading(page, /Chair Makers Ltd/);
  await audit(page, admin.who);
  const number = await (await page.request.get(`${BASE}/api/v1/documents/${po}`)).json().then((d) => d.number);
  if (!/^PO-/.test(number || '')) fail(`the PO has no number: ${number}`);
  await page.getByLabel('Share a document').fill(number);
  await page.getByRole('button', { name: 'Share' }).click();
  await expectNotice(page, 'The document is shared with this relation.');
  await page.getByRole('link', { name: number }).waitFor();
  await page.getByLabel('Invite someone: their email').fill('vera@chairmakers.example');
  await page.getByLabel('Their name').fill('Vera Vendor');
  await page.getByRole('button', { name: 'Make a portal link' }).click();
  const link = await page.locator('#fresh-link').getAttribute('href');
  if (!/^\/portal\/[0-9a-f-]{36}\/enter\?token=csp_/.test(link || '')) fail(`no portal link shown: ${link}`);
  await audit(page, admin.who);

  // 1b. The admin asks the vendor a question on the document page.
  await page.goto(`${BASE}/documents/${po}`);
  await page.getByRole('heading', { name: 'Questions to vendors and clients' }).waitFor();
  await page.getByLabel('Ask', { exact: true }).selectOption({ label: 'Chair Makers Ltd' });
  await page.getByLabel('Your question').fill('Please send the signed delivery note.');
  await page.getByLabel('Ask them for a file').check();
  await page.getByRole('button', { name: 'Send the question' }).click();
  await expectNotice(page, 'Your question was sent.');
  await page.getByText('Waiting for an answer').first().waitFor();
  await audit(page, admin.who);

  // 2. The vendor opens the link in their own browser: one button, then the portal.
  const vendor = await person('vendor');
  const v = vendor.page;
  await v.goto(`${BASE}${link}`);
  await heading(v, 'Open the portal');
  await audit(v, vendor.who);
  await v.getByRole('button', { name: 'Open the portal' }).click();
  await heading(v, 'Shared with you');
  await expectNotice(v, '1 question from');
  await audit(v, vendor.who);
  // Click through (boosted navigation): no fresh page load of the document page.
  await v.evaluate(() => { window.__sameDocument = true; });
  await v.getByRole('link', { name: number }).click();
  await heading(v, new RegExp(number));
  if (!(await v.evaluate(() => window.__sameDocument === true))) fail('the click through reloaded the page');
  await v.getByRole('cell', { name: 'Four chairs' }).waitFor();
  await audit(v, vendor.who);

  // 3. The vendor uploads an invoice; the progress bar reaches its max; the row appears.
  const invoice = { name: 'invoice-117.pdf', mimeType: 'application/pdf', buffer: pdf(600 * 1024) };
  await v.getByLabel(/Send a file/).setInputFiles(invoice);
  await v.getByRole('button', { name: 'Send', exact: true }).click();
  try {
    await v.waitForFunction(
      () => Number(document.querySelector('form[data-upload]').getAttribute('data-uploaded') || '0') > 0,
      null,
      { timeout: 20000 },
    );
  } catch (e) {
    const said = await v.locator('[data-upload-status]').textContent().catch(() => '');
    fail(`the upload did not finish: ${said}`);
  }
  const seen = await v.locator('form[data-upload]').evaluate((f) => {
    const bar = f.querySelector('progress');
    return { events: Number(f.getAttribute('data-progress-events') || '0'), value: bar.value, max: bar.max };
  });
  if (seen.events < 1 || seen.max < invoice.buffer.length || seen.value !== seen.max) {
    fail(`the progress bar did not follow the upload: ${JSON.stringify(seen)}`);
  }
  await v.locator('#attachments-table').getByRole('cell', { name: invoice.name, exact: true }).waitFor();
  await audit(v, vendor.who);

  // 3b. The vendor answers the question with a file.
  await v.getByText('Please send the signed delivery note.').waitFor();
  await v.getByRole('textbox', { name: 'Your answer' }).fill('Signed copy attached.');
  const note = { name: 'delivery-note.pdf', mimeType: 'application/pdf', buffer: pdf(4 * 1024) };
  await v.getByLabel(/A file with your answer/).setInputFiles(note);
  await v.getByRole('button', { name: 'Send the answer' }).click();
  await expectNotice(v, 'Your answer was sent.');
  await v.getByText('Signed copy attached.').waitFor();
  await audit(v, vendor.who);

  // 4. Staff see the invoice on the document.
  const staff = await person('staff');
  await signIn(staff, process.env.STAFF);
  await staff.page.goto(`${BASE}/documents/${po}`);
  await staff.page.getByRole('heading', { name: 'Attachments' }).waitFor();
  await staff.page.locator('#attachments-table').getByRole('cell', { name: invoice.name, exact: true }).waitFor();
  await staff.page.locator('#requests').getByText('Signed copy attached.').waitFor();
  await staff.page.locator('#requests').getByRole('link', { name: 'delivery-note.pdf' }).waitFor();
  await audit(staff.page, staff.who);

  // 5. The same link again, in a fresh browser: refused in words, no portal.
  const replay = await person('replayer');
  const r = replay.page;
  await r.goto(`${BASE}${link}`);
  await heading(r, 'Open the portal');
  expectStatuses([410]);
  await r.getByRole('button', { name: 'Open the portal' }).click();
  await expectNotice(r, 'This link has already been used.');
  if (r.url().endsWith('/portal')) fail('a replayed link opened the portal');
  await audit(r, replay.who);
  expectStatuses([]);
  const after = await r.request.get(`${BASE}/api/v1/portal/documents`);
  if (after.status() !== 401) fail(`the replayed link left a session: ${after.status()}`);
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
}

await finish('portal', 11, 'portal flow: a vendor added, the PO shared, a link made, a question asked; the vendor opened it, clicked through to the PO, uploaded an invoice with the progress bar, answered the question with a file; staff saw both; the replayed link was refused');
