// The sign-in side in Chromium, run by tests/browser.rs (which starts the server with the dev
// outbox routed, so this flow reads the mailed codes as a person reads their mail), the same
// harness as the other flows: a session outlives its access cookie (a page and a form after the
// cookie is gone); an authenticator app set up on the account page, then a sign-in with its code
// and one with a recovery code; a member of an organisation that requires a second factor signs
// in with the mailed code and is walked through the authenticator setup into the inbox; a
// sign-in with a code by email. TOTP codes are computed here (RFC 6238, HMAC-SHA1) from the key
// the page shows for typing in. Exits non-zero on the first failed step, or at the end when any
// console error, CSP violation or serious/critical axe finding was seen on any page visited.

import { createHmac } from 'node:crypto';
import {
  BASE, ORG, PASSWORD, audit, expectNotice, expectStatuses, fail, finish, heading, person, problems,
} from './harness.mjs';

function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of s.replace(/[=\s]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) fail(`not base32: ${s}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** The TOTP code of `key` (base32) for the 30-second step `offset` steps from now. */
function totp(key, offset = 0) {
  const step = Math.floor(Date.now() / 1000 / 30) + offset;
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32(key)).update(counter).digest();
  const o = h[h.length - 1] & 0x0f;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1000000).padStart(6, '0');
}

/** Ids of the messages to `to` in the dev outbox now. */
async function mailIds(to) {
  const r = await fetch(`${BASE}/api/v1/dev/outbox?to=${encodeURIComponent(to)}`);
  if (!r.ok) fail(`dev outbox: ${r.status}`);
  return (await r.json()).items;
}

/** The code in the first message to `to` that was not among `seen` (mail is sent in the background). */
async function mailedCode(to, seen) {
  const known = new Set(seen.map((m) => m.id));
  for (let i = 0; i < 100; i += 1) {
    const fresh = (await mailIds(to)).filter((m) => !known.has(m.id));
    const m = fresh.map((x) => /: (\d{8})\b/.exec(x.body)).find(Boolean);
    if (m) return m[1];
    await new Promise((r) => setTimeout(r, 100));
  }
  return fail(`no code was mailed to ${to}`);
}

async function passwordStep(p, org, email) {
  const { page } = p;
  await page.goto(`${BASE}/sign-in`);
  await heading(page, 'Sign in to Countersign');
  await page.getByLabel('Organisation').fill(org);
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function signOut(p) {
  await p.page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await heading(p.page, 'Sign in to Countersign');
}

/** On the authenticator setup (account page or forced): reads the key, confirms with a code, returns a recovery code. */
async function turnOn(p, codeLabel, button) {
  const { page, who } = p;
  const qr = page.getByRole('img', { name: 'QR code to add Countersign to your authenticator app' });
  await qr.waitFor();
  if (!(await qr.evaluate((img) => img.complete && img.naturalWidth > 0))) fail(`${who}: the QR code did not load`);
  const src = await qr.getAttribute('src');
  if (!src.startsWith('data:image/svg+xml;base64,')) fail(`${who}: the QR code is not an SVG image: ${src.slice(0, 40)}`);
  await audit(page, who);
  const key = (await page.locator('code').filter({ hasText: /^[A-Z2-7]{16,}=*$/ }).first().textContent()).trim();
  await page.getByLabel(codeLabel).fill(totp(key));
  await page.getByRole('button', { name: button }).click();
  await page.getByRole('heading', { name: 'Your recovery codes' }).waitFor();
  const codes = await page.locator('.recovery-codes code').allTextContents();
  if (codes.length !== 10) fail(`${who}: ${codes.length} recovery codes shown`);
  await audit(page, who);
  return { key, recovery: codes[0] };
}

try {
  // 1. The session outlives its access cookie: a page, then a form, after the cookie is gone.
  const finance = await person('finance');
  await passwordStep(finance, ORG, process.env.FINANCE);
  await heading(finance.page, 'Inbox');
  await finance.context.clearCookies({ name: 'cs_access' });
  await finance.page.goto(`${BASE}/documents/${process.env.FIXTURE_DOCUMENT}`);
  await finance.page.getByRole('heading', { name: 'What you can do' }).waitFor();
  if (finance.page.url() !== `${BASE}/documents/${process.env.FIXTURE_DOCUMENT}`) fail(`resumed onto ${finance.page.url()}`);
  await audit(finance.page, finance.who);
  await finance.context.clearCookies({ name: 'cs_access' });
  const form = finance.page.locator('form.action', { has: finance.page.locator('input[name="transition"][value="approve"]') });
  await form.getByRole('button', { name: 'Approve' }).click();
  await expectNotice(finance.page, 'Approved. It has moved on to the next level.');
  await audit(finance.page, finance.who);
  const jar = await finance.context.cookies();
  if (!jar.some((c) => c.name === 'cs_access')) fail('no new access cookie after the resume');

  // 2. An authenticator app on the account page; then sign-ins with its code and a recovery code.
  const hod = await person('hod');
  await passwordStep(hod, ORG, process.env.HOD);
  await heading(hod.page, 'Inbox');
  await hod.page.getByRole('link', { name: 'My account' }).click();
  await heading(hod.page, 'My account');
  await hod.page.getByText('Off', { exact: true }).waitFor();
  await hod.page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const { key, recovery } = await turnOn(hod, 'Code from the app', 'Turn on');
  await hod.page.goto(`${BASE}/account`);
  await hod.page.getByText(/since/).first().waitFor();
  await hod.page.getByText('10 of 10').waitFor();
  await signOut(hod);
  await passwordStep(hod, ORG, process.env.HOD);
  await heading(hod.page, 'One more step');
  await audit(hod.page, hod.who);
  // The next step's code: later than the one the confirmation used, within the accepted window.
  await hod.page.getByLabel('Code from your authenticator app').fill(totp(key, 1));
  await hod.page.getByRole('button', { name: 'Continue', exact: true }).click();
  await heading(hod.page, 'Inbox');
  await signOut(hod);
  await passwordStep(hod, ORG, process.env.HOD);
  await heading(hod.page, 'One more step');
  await hod.page.getByText('Use a recovery code instead').click();
  await hod.page.getByLabel('Recovery code').fill(recovery);
  await hod.page.getByRole('button', { name: 'Continue with a recovery code' }).click();
  await heading(hod.page, 'Inbox');
  await hod.page.getByRole('link', { name: 'My account' }).click();
  await hod.page.getByText('9 of 10').waitFor();
  await audit(hod.page, hod.who);

  // 3. Forced enrolment: the organisation requires a second factor, the member has none.
  const forced = await person('forced');
  const forcedEmail = process.env.FORCED;
  const before = await mailIds(forcedEmail);
  await passwordStep(forced, process.env.FORCED_ORG, forcedEmail);
  await heading(forced.page, 'One more step');
  await audit(forced.page, forced.who);
  await forced.page.getByLabel('Code from the email').fill(await mailedCode(forcedEmail, before));
  await forced.page.getByRole('button', { name: 'Continue', exact: true }).click();
  await heading(forced.page, 'Set up your authenticator app');
  await audit(forced.page, forced.who);
  // Every page of the organisation sends them back here until the app is on.
  await forced.page.goto(`${BASE}/periods`);
  await heading(forced.page, 'Set up your authenticator app');
  await forced.page.goto(`${BASE}/`);
  await heading(forced.page, 'Set up your authenticator app');
  await forced.page.getByRole('button', { name: 'Set up the authenticator app' }).click();
  await turnOn(forced, 'Code from the app', 'Turn on');
  await forced.page.getByRole('link', { name: 'I have saved them — continue' }).click();
  await heading(forced.page, 'Inbox');
  await audit(forced.page, forced.who);

  // 4. A code by email instead of a password; a wrong code first is said on the form.
  const staff = await person('staff');
  await staff.page.goto(`${BASE}/sign-in`);
  await staff.page.getByRole('link', { name: 'Email me a code instead' }).click();
  await heading(staff.page, 'Sign in with a code by email');
  await audit(staff.page, staff.who);
  const mailed = await mailIds(process.env.STAFF);
  await staff.page.getByLabel('Organisation').fill(ORG);
  await staff.page.getByLabel('Email', { exact: true }).fill(process.env.STAFF);
  await staff.page.getByRole('button', { name: 'Email me a code' }).click();
  await expectNotice(staff.page, 'we have emailed it a code');
  await audit(staff.page, staff.who);
  const code = await mailedCode(process.env.STAFF, mailed);
  expectStatuses([401]);
  await staff.page.getByLabel('Code from the email').fill(code === '00000000' ? '11111111' : '00000000');
  await staff.page.getByRole('button', { name: 'Sign in' }).click();
  await expectNotice(staff.page, 'That code is wrong, expired or already used');
  await audit(staff.page, staff.who);
  expectStatuses([]);
  await staff.page.getByLabel('Code from the email').fill(code);
  await staff.page.getByRole('button', { name: 'Sign in' }).click();
  await heading(staff.page, 'Inbox');
  await audit(staff.page, staff.who);
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
}

await finish('signin', 14, 'sign-in flow: a page and a form after the access cookie expired, an authenticator set up then used, a recovery code, a forced enrolment after a mailed code, a sign-in by mailed code');
