// The documents side in Chromium, run by tests/browser.rs (which starts the server and passes
// BASE_URL, the people and CHROMIUM / AXE_PATH), on the same harness as approvals.mjs: a query
// back to the raiser, who edits the voucher while it is queried and answers on its page; the
// HOD sees the answer and approves by keyboard; the inbox filtered by kind; two documents
// approved in bulk through the confirmation page; finance closes a period and the MD reopens
// it with a reason. Exits non-zero on the first failed step, or at the end when any console
// error, CSP violation or serious/critical axe finding was seen on any page visited.

import {
  BASE, approveByKeyboard, audit, expectNotice, expectStatuses, fail, finish, heading, openDocument, person, problems,
  signIn, submitRaise,
} from './harness.mjs';

async function raise(p, kind, title, lines) {
  const { page } = p;
  await page.goto(`${BASE}/`);
  await page.getByRole('link', { name: 'Raise a document' }).click();
  await heading(page, 'Raise a document');
  if (kind === 'purchase_order') await page.getByLabel('Purchase order: something to buy').check();
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

  // 1. A query back to the raiser; the raiser edits while queried and answers on the page.
  const id = await raise(staff, 'voucher', 'Workshop catering', [['Lunch for twelve', '480.00']]);
  await openDocument(hod, id);
  await hod.page.getByLabel('Your question for the raiser').fill('Is this for twelve or for ten people?');
  await hod.page.getByRole('button', { name: 'Ask the raiser a question' }).click();
  await expectNotice(hod.page, 'Your question was sent to the raiser.');
  await audit(hod.page, hod.who);

  await openDocument(staff, id);
  await staff.page.locator('.discussion').getByText('Is this for twelve or for ten people?').waitFor();
  await staff.page.getByRole('link', { name: 'Edit', exact: true }).click();
  await staff.page.getByRole('heading', { level: 1, name: /^Edit PV-/ }).waitFor();
  await audit(staff.page, staff.who);
  await staff.page.getByLabel('Line 1: description').fill('Lunch for ten');
  await staff.page.getByLabel('Line 1: amount').fill('400.00');
  await staff.page.getByRole('button', { name: 'Save changes' }).click();
  await expectNotice(staff.page, 'Your changes were saved.');
  await staff.page.getByText('Lunch for ten').waitFor();
  await audit(staff.page, staff.who);
  await staff.page.getByLabel('Your answer').fill('Ten: two cancelled, the amount is corrected.');
  await staff.page.getByRole('button', { name: 'Answer the query' }).click();
  await expectNotice(staff.page, 'Your answer was sent; the document is back with the approver.');
  await audit(staff.page, staff.who);

  // The HOD sees the answer and the corrected amount, and approves by keyboard only.
  await openDocument(hod, id);
  await hod.page.locator('.discussion').getByText('Ten: two cancelled, the amount is corrected.').waitFor();
  await hod.page.locator('.lines').getByText('400.00').first().waitFor();
  await hod.page.locator('.timeline').getByText('Edited').waitFor();
  await approveByKeyboard(hod);

  // 2. Two more documents; the inbox filtered by kind.
  await raise(staff, 'voucher', 'Taxi receipts', [['Taxis, March', '86.40']]);
  await raise(staff, 'purchase_order', 'Standing desks', [['Two desks', '1,150.00']]);
  await hod.page.goto(`${BASE}/`);
  await heading(hod.page, 'Inbox');
  await hod.page.getByRole('link', { name: /^Purchase orders: 1/ }).waitFor();
  await hod.page.getByLabel('Kind', { exact: true }).selectOption('purchase_order');
  await hod.page.getByRole('button', { name: 'Filter' }).click();
  await hod.page.waitForURL(/kind=purchase_order/);
  await hod.page.getByRole('link', { name: 'Standing desks' }).waitFor();
  if (await hod.page.getByRole('link', { name: 'Taxi receipts' }).count()) fail('the kind filter kept a voucher');
  await hod.page.getByRole('link', { name: /Kind: Purchase order/ }).waitFor();
  await audit(hod.page, hod.who);

  // 3. Bulk approval of both, with one confirmation.
  await hod.page.goto(`${BASE}/`);
  await hod.page.getByLabel(/Select PV-\d{4}-\d+ Taxi receipts to approve/).check();
  await hod.page.getByLabel(/Select PO-\d{4}-\d+ Standing desks to approve/).check();
  await hod.page.getByRole('button', { name: 'Approve selected…' }).click();
  await heading(hod.page, 'Approve 2 documents?');
  await hod.page.getByText('1,150.00').first().waitFor();
  await audit(hod.page, hod.who);
  await hod.page.getByRole('button', { name: 'Approve 2 documents' }).click();
  await heading(hod.page, '2 documents approved');
  await expectNotice(hod.page, 'Approved. Each has moved on to its next level.');
  await audit(hod.page, hod.who);

  // 4. Finance closes the fixture's period; the MD (who may not close) reopens it with a reason.
  await finance.page.goto(`${BASE}/periods`);
  await heading(finance.page, 'Fiscal periods');
  await audit(finance.page, finance.who);
  await finance.page.getByLabel('Reason for closing FY-fixture (optional)').fill('Year-end sign-off');
  await finance.page.getByRole('button', { name: 'Close FY-fixture' }).click();
  await expectNotice(finance.page, 'The period is closed');
  await audit(finance.page, finance.who);
  await md.page.goto(`${BASE}/periods`);
  await heading(md.page, 'Fiscal periods');
  if (await md.page.getByRole('button', { name: /^Close / }).count()) fail('the MD was offered to close a period');
  expectStatuses([422]);
  await md.page.getByRole('button', { name: 'Reopen FY-fixture' }).click();
  await md.page.getByText('Say why it must reopen, in 3 to 500 characters.').waitFor();
  await audit(md.page, md.who);
  expectStatuses([]);
  await md.page.getByLabel('Why must FY-fixture reopen?').fill('A late supplier invoice from June');
  await md.page.getByRole('button', { name: 'Reopen FY-fixture' }).click();
  await expectNotice(md.page, 'The period is open again');
  await audit(md.page, md.who);
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
}

await finish('documents', 20, 'documents flow: queried, edited while queried, answered, approved by keyboard; filtered by kind; two approved in bulk after one confirmation; a period closed by finance and reopened by the MD');
