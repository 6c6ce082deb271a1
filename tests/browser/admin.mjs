// The administration pages in Chromium, run by tests/browser.rs (which starts the server and
// passes BASE_URL, the people and CHROMIUM / AXE_PATH), the same harness as approvals.mjs: an
// admin approves a pending joiner and changes a member's role, and the member's open page is
// signed out on its next request; staff are refused the members page; the audit trail shows the
// change; my account starts an authenticator enrolment (the QR code is an image data URI). Exits
// non-zero on the first failed step, or at the end when any console error, CSP violation or
// serious/critical axe finding was seen on any page visited.

import {
  BASE, audit, expectNotice, expectStatuses, fail, finish, heading, person, problems, signIn,
} from './harness.mjs';

try {
  const admin = await person('admin');
  const staff = await person('staff');
  await signIn(admin, process.env.ADMIN);
  await signIn(staff, process.env.STAFF);
  await audit(staff.page, staff.who);

  // Staff are not offered the members page, and opening it anyway is the 403 page.
  if (await staff.page.getByRole('link', { name: 'Members' }).count()) fail('staff were offered the members page');
  expectStatuses([403]);
  const refused = await staff.page.goto(`${BASE}/members`);
  if (refused.status() !== 403) fail(`staff opening /members got ${refused.status()}`);
  await heading(staff.page, 'You may not do this');
  await audit(staff.page, staff.who);
  expectStatuses([]);
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
  expectStatuses([422]);
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
  expectStatuses([]);
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
}

await finish('admin', 14, `admin flow: a joiner approved, a role changed (its member signed out on the next request), staff refused, the change in the audit trail, settings and a new API key, an authenticator enrolment started`);
