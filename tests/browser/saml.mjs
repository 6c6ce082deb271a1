// SAML single sign-on in Chromium, run by tests/browser.rs (which starts the real pysaml2 IdP,
// tests/saml/idp.py, knowing this organisation's service provider). The server and the IdP are
// both on 127.0.0.1 (other ports: the same site), as a plain-HTTP SP needs for its `Lax` binding
// cookie to come back with the IdP's POST. An administrator pastes the IdP's metadata into the
// settings page and tests the connection; a member starts from the sign-in page's button, types
// their email on the IdP's own login page and presses Sign in, and the IdP's auto-posting form
// (its Continue button when its script does not run) lands them in the inbox, signed in. The
// same response posted again from the same browser, with its binding cookie put back, is refused
// with a readable page. Exits non-zero on the first failed step, or at the end when any console
// error, CSP violation or serious/critical axe finding was seen on any of our pages.

import {
  BASE, ORG, audit, expectNotice, expectStatuses, fail, finish, heading, person, signIn,
} from './harness.mjs';

const IDP = process.env.IDP_BASE;
const METADATA = process.env.IDP_METADATA;

// The administrator: the settings page's SAML section.
const admin = await person('admin');
await signIn(admin, process.env.ADMIN);
await admin.page.goto(`${BASE}/settings`);
await heading(admin.page, 'Settings');
await admin.page.getByLabel('Identity provider metadata (XML)').fill(METADATA);
// Two sections ask for allowed domains (OpenID Connect and SAML): this is the second's.
await admin.page.locator('#saml-domains').fill(`${ORG}.example`);
await admin.page.getByRole('button', { name: 'Save SAML single sign-on' }).click();
await expectNotice(admin.page, 'Saved: SAML single sign-on uses this identity provider from the next sign-in.');
await audit(admin.page, 'admin');
await admin.page.getByRole('button', { name: 'Test SAML connection' }).click();
await expectNotice(admin.page, 'Connected:');
await expectNotice(admin.page, 'Signing certificate CN=test-idp');
await audit(admin.page, 'admin');

// A member, in a browser of their own.
const member = await person('member');
const { page, context } = member;
let acs = null;
page.on('request', (r) => {
  if (r.method() === 'POST' && r.url().startsWith(`${BASE}/saml/${ORG}/acs`)) acs = { url: r.url(), body: r.postData() };
});
await page.goto(`${BASE}/sign-in?organisation=${ORG}`);
await heading(page, 'Sign in to Countersign');
await audit(page, 'member');
const host = new URL(IDP).host;
await page.getByRole('link', { name: `Sign in with SAML single sign-on (${host})` }).click();
// The IdP's own login page (not ours to audit).
try {
  await page.getByRole('heading', { name: 'Test identity provider' }).waitFor({ timeout: 15000 });
} catch (e) {
  fail(`member: not at the IdP's login page: ${page.url()}\n${(await page.content()).slice(0, 2000)}`);
}
if (!page.url().startsWith(IDP)) fail(`member: the login page is not the IdP's: ${page.url()}`);
const binding = (await context.cookies()).find((c) => c.name === 'cs_saml');
if (!binding) fail('member: starting the sign-in set no binding cookie');
await page.getByLabel('Email').fill(process.env.MEMBER);
await page.getByRole('button', { name: 'Sign in' }).click();
try {
  await page.getByRole('heading', { name: 'Inbox', level: 1 }).waitFor({ timeout: 15000 });
} catch (e) {
  if (!page.url().startsWith(IDP)) {
    fail(`member: not in the inbox after the IdP: ${page.url()}\n${(await page.content()).slice(0, 3000)}`);
  }
  // The auto-post did not run: the person presses Continue.
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('heading', { name: 'Inbox', level: 1 }).waitFor({ timeout: 15000 });
}
if (!page.url().startsWith(BASE)) fail(`member: landed on ${page.url()}`);
await audit(page, 'member');
const names = (await context.cookies()).map((c) => c.name);
for (const name of ['cs_access', 'cs_refresh', 'cs_csrf']) {
  if (!names.includes(name)) fail(`member: no ${name} cookie after SAML sign-in (${names})`);
}
if (names.includes('cs_saml')) fail('member: the binding cookie outlived the sign-in');
if (!acs || !acs.body) fail('member: the IdP posted nothing to the ACS');
await page.getByRole('button', { name: 'Sign out', exact: true }).click();
await heading(page, 'Sign in to Countersign');

// The replay: the very response posted again from this browser's sign-in page, its binding
// cookie put back (as an attacker holding both would).
await context.addCookies([{
  name: binding.name, value: binding.value, domain: binding.domain, path: binding.path,
  httpOnly: true, sameSite: 'Lax', expires: binding.expires,
}]);
const response = new URLSearchParams(acs.body).get('SAMLResponse');
expectStatuses([403]);
await page.evaluate(({ url, saml }) => {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = url;
  for (const [name, value] of [['SAMLResponse', saml], ['RelayState', '']]) {
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}, { url: acs.url, saml: response });
await page.waitForURL(acs.url);
await heading(page, 'Sign in to Countersign');
await expectNotice(page, 'This sign-in answer was already used, so nobody was signed in.');
await expectNotice(page, 'saml_assertion_replayed');
await audit(page, 'member');
expectStatuses([]);
const after = (await context.cookies()).filter((c) => c.name === 'cs_access' && c.value !== '');
if (after.length > 0) fail('member: the replayed response opened a session');

await finish('saml', 5, 'saml flow: an administrator uploaded and tested the IdP metadata; a member signed in through its login page into the inbox; the replayed response was refused');
