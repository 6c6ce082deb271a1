// The SCIM settings page's group mappings in Chromium, run by tests/browser.rs (which starts the
// server, has the identity provider put the staff member in the group "Finance Approvers", and
// passes BASE_URL, the people and CHROMIUM / AXE_PATH): the admin maps the group to Finance in
// Operations from the form (owner is not offered), the staff member's open page is signed out on
// its next request (their role changed), and removing the mapping is said on the page. Exits
// non-zero on the first failed step, or at the end when any console error, CSP violation or
// serious/critical axe finding was seen on any page visited.

import { BASE, audit, expectNotice, fail, finish, heading, person, problems, signIn } from './harness.mjs';

try {
  const admin = await person('admin');
  const staff = await person('staff');
  await signIn(admin, process.env.ADMIN);
  await signIn(staff, process.env.STAFF);

  await admin.page.goto(`${BASE}/settings/scim`);
  await heading(admin.page, 'SCIM provisioning');
  await audit(admin.page, admin.who);
  const roles = await admin.page.getByLabel('Role it gives').locator('option').allTextContents();
  if (roles.some((r) => /owner/i.test(r))) fail(`owner is offered as a role a group gives: ${roles}`);

  await admin.page.getByLabel('Find the group by').selectOption('display_name');
  await admin.page.getByLabel('Group', { exact: true }).fill('Finance Approvers');
  await admin.page.getByLabel('Role it gives').selectOption('finance');
  await admin.page.getByLabel('Department it gives').selectOption('OPS');
  await admin.page.getByRole('button', { name: 'Map the group' }).click();
  await expectNotice(admin.page, 'Mapped:');
  await admin.page.getByRole('row', { name: /Named Finance Approvers/ }).getByText('Finance', { exact: true }).waitFor();
  await audit(admin.page, admin.who);

  // The staff member was in the group: their role changed, so their open page is signed out.
  await staff.page.getByRole('link', { name: 'Documents' }).click();
  await heading(staff.page, 'Sign in to Countersign');
  await audit(staff.page, staff.who);

  await admin.page.getByRole('button', { name: 'Remove the mapping of Named Finance Approvers' }).click();
  await expectNotice(admin.page, 'Mapping removed');
  await audit(admin.page, admin.who);
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
}

await finish('scim', 5, 'scim flow: a group mapped to a role from the settings page (owner not offered), its member signed out on the next request, the mapping removed');
