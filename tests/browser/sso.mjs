// Single sign-on in Chromium, run by tests/browser.rs (which starts the real oidc-provider peer,
// tests/oidc/provider.mjs, with this server's callback registered). The server is opened as
// `localhost` and the provider answers at `127.0.0.1`: two sites, so the provider's redirect back
// is a real cross-site top-level navigation, which only a `SameSite=Lax` binding cookie survives.
// An administrator sets the provider up on the settings page and tests the connection; a member
// then signs in from the sign-in page's button through the provider's own login page and lands
// in the inbox, signed in. Exits non-zero on the first failed step, or at the end when any
// console error, CSP violation or serious/critical axe finding was seen on any of our pages.

import {
  BASE, ORG, audit, expectNotice, expectStatuses, fail, finish, heading, person, signIn,
} from './harness.mjs';

const ISSUER = process.env.ISSUER;
const CLIENT_ID = process.env.CLIENT_ID;
const CLIENT_SECRET = process.env.CLIENT_SECRET;

// The administrator: the settings page's single sign-on section.
const admin = await person('admin');
await signIn(admin, process.env.ADMIN);
await admin.page.goto(`${BASE}/settings`);
await heading(admin.page, 'Settings');
await admin.page.getByLabel('Provider', { exact: true }).selectOption('generic');
await admin.page.getByLabel('Issuer', { exact: true }).fill(ISSUER);
await admin.page.getByLabel('Client ID').fill(CLIENT_ID);
await admin.page.getByLabel('Client secret').fill(CLIENT_SECRET);
// Two sections ask for allowed domains (OpenID Connect and SAML): this is the first's.
await admin.page.locator('#sso-domains').fill(`${ORG}.example`);
await admin.page.getByRole('button', { name: 'Save single sign-on' }).click();
await expectNotice(admin.page, 'Saved: single sign-on uses these settings from the next sign-in.');
await expectNotice(admin.page, 'A secret is set; it is never shown.');
if ((await admin.page.content()).includes(CLIENT_SECRET)) fail('admin: the client secret was shown back');
await audit(admin.page, 'admin');
await admin.page.getByRole('button', { name: 'Test connection' }).click();
await expectNotice(admin.page, 'Connected:');
await audit(admin.page, 'admin');

// A member, in a browser of their own: the button appears once the organisation is known.
const member = await person('member');
const { page } = member;
await page.goto(`${BASE}/sign-in?organisation=${ORG}`);
await heading(page, 'Sign in to Countersign');
await audit(page, 'member');
const host = new URL(ISSUER).host;
await page.getByRole('link', { name: `Sign in with single sign-on (${host})` }).click();
// The provider's own login page (another site: not ours to audit).
try {
  await page.getByRole('heading', { name: 'Test identity provider' }).waitFor({ timeout: 15000 });
} catch (e) {
  fail(`member: not at the provider's login page: ${page.url()}\n${(await page.content()).slice(0, 2000)}`);
}
if (!page.url().startsWith(ISSUER)) fail(`member: the login page is not the provider's: ${page.url()}`);
expectStatuses([404]);
await page.getByLabel('Username').fill(process.env.IDP_LOGIN);
await page.getByLabel('Password').fill('provider-pass');
await page.getByRole('button', { name: 'Sign in at the provider' }).click();
try {
  await page.getByRole('heading', { name: 'Inbox', level: 1 }).waitFor({ timeout: 15000 });
} catch (e) {
  fail(`member: not in the inbox after the provider: ${page.url()}\n${(await page.content()).slice(0, 3000)}`);
}
await heading(page, 'Inbox');
expectStatuses([]);
if (!page.url().startsWith(BASE)) fail(`member: landed on ${page.url()}`);
await audit(page, 'member');
// Every cookie of the browser (the refresh cookie is scoped to /api/v1/auth, not to BASE).
const cookies = await member.context.cookies();
const names = cookies.map((c) => c.name);
for (const name of ['cs_access', 'cs_refresh', 'cs_csrf']) {
  if (!names.includes(name)) fail(`member: no ${name} cookie after single sign-on (${names})`);
}
if (names.includes('cs_sso')) fail('member: the binding cookie outlived the sign-in');
await page.getByRole('button', { name: 'Sign out', exact: true }).click();
await heading(page, 'Sign in to Countersign');

await finish('sso', 4, 'sso flow: an administrator set up and tested the provider; a member signed in through its login page into the inbox and out again');
