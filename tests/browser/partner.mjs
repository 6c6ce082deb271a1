// The partner journey in Chromium, run by tests/browser.rs (BASE_URL, ORG, PASSWORD, AGENT: a
// partner agent of partner A, BOB: partner B's admin, CHANNEL: a channel manager, FINANCE,
// CHROMIUM, AXE_PATH), on the shared harness: the agent registers a deal and is told what the
// conflict check found, the channel manager approves it in another browser context (the agent
// is offered no decision form), the agent opens an opportunity and closes it won, finance
// approves the commission, the agent sees it approved and then payable, disputes it (an empty
// reason first: the page says why and keeps the form), finance resolves the dispute with a
// corrected amount (a bad amount first: said under the field, the text kept), the agent sees it
// calculated again at the corrected amount, and partner B sees none of it, then invites an agent
// of its own, finds the invitation listed and revokes it. Exits non-zero on the first failed step, or at the end when any console error, CSP
// violation or serious/critical axe finding was seen.

import {
  BASE, ORG, PASSWORD, audit, expectNotice, expectStatuses, fail, finish, heading, person,
} from './harness.mjs';

const CUSTOMER = 'Globex Corporation';
const OPPORTUNITY = 'Globex rollout 2030';

/** Signs `p` in from the programme page (sent to sign in, then back to it). */
async function signIn(p, email) {
  const { page, who } = p;
  await page.goto(`${BASE}/programme`);
  await heading(page, 'Sign in to Countersign');
  await page.getByLabel('Organisation').fill(ORG);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('load');
  if (!page.url().endsWith('/programme')) await page.goto(`${BASE}/programme`);
  await heading(page, 'Partner programme');
  await audit(page, who);
}

function row(page, text) {
  return page.locator('tr', { hasText: text });
}

const agent = await person('partner A agent');
await signIn(agent, process.env.AGENT);
let dealUrl;
{
  const { page, who } = agent;
  await page.getByLabel('Customer company').fill(CUSTOMER);
  await page.getByLabel('Customer domain').fill('globex.example');
  await page.locator('#deal-amount').fill('20,000.00');
  await page.getByLabel('Expected close').fill('2030-06-30');
  await page.getByRole('button', { name: 'Register the deal' }).click();
  await heading(page, `Deal registration: ${CUSTOMER}`);
  await expectNotice(page, 'No other registration for this customer was found.');
  await audit(page, who);
  dealUrl = page.url().split('?')[0];
  if (await page.getByRole('button', { name: 'Approve registration' }).count() > 0) {
    fail(`${who}: the partner is offered a decision form`);
  }
}

const channel = await person('channel manager');
await signIn(channel, process.env.CHANNEL);
{
  const { page, who } = channel;
  await row(page, CUSTOMER).getByRole('link', { name: CUSTOMER }).click();
  await heading(page, `Deal registration: ${CUSTOMER}`);
  await audit(page, who);
  await page.getByLabel('Reason').fill('New logo for partner A');
  await page.getByRole('button', { name: 'Approve registration' }).click();
  await expectNotice(page, 'Approved: the deal is protected for the partner.');
  await audit(page, who);
}

{
  const { page, who } = agent;
  await page.goto(dealUrl);
  await expectNotice(page, 'Approved: the deal is protected for this partner');
  await page.getByLabel('Name').fill(OPPORTUNITY);
  await page.getByLabel('Product code').fill('fixture');
  await page.getByRole('button', { name: 'Open the opportunity' }).click();
  await expectNotice(page, 'The opportunity is open');
  await audit(page, who);
  await page.goto(`${BASE}/programme`);
  await heading(page, 'Partner programme');
  for (const [stage, notice] of [['Proposal', 'The opportunity moved on.'], ['Negotiation', 'The opportunity moved on.'],
    ['Closed won', 'Closed won: the commission is calculated']]) {
    const r = page.locator('#opportunities-heading ~ table tr', { hasText: OPPORTUNITY });
    await r.getByLabel('Move to').selectOption({ label: stage });
    await r.getByRole('button', { name: 'Move' }).click();
    await expectNotice(page, notice);
  }
  await audit(page, who);
  await page.locator('#commissions-heading ~ table tr', { hasText: OPPORTUNITY })
    .getByText('Calculated, waiting for finance').waitFor();
}

const finance = await person('finance');
await signIn(finance, process.env.FINANCE);
{
  const { page, who } = finance;
  // Finance reads no opportunities: the commission is known by the amount it is on.
  const r = () => page.locator('#commissions-heading ~ table tr', { hasText: '20,000.00 EUR' });
  await r().getByRole('button', { name: 'Approve commission' }).click();
  await expectNotice(page, 'The commission is approved');
  await audit(page, who);
}

{
  const { page, who } = agent;
  await page.goto(`${BASE}/programme`);
  await page.locator('#commissions-heading ~ table tr', { hasText: OPPORTUNITY })
    .getByText('Approved', { exact: true }).waitFor();
  await audit(page, who);
}

{
  const { page, who } = finance;
  await page.goto(`${BASE}/programme`);
  await page.locator('#commissions-heading ~ table tr', { hasText: '20,000.00 EUR' })
    .getByRole('button', { name: 'Mark payable' }).click();
  await expectNotice(page, 'The commission is payable.');
  await audit(page, who);
}

{
  const { page, who } = agent;
  await page.goto(`${BASE}/programme`);
  await page.locator('#commissions-heading ~ table tr', { hasText: OPPORTUNITY })
    .getByText('Payable', { exact: true }).waitFor();
  await audit(page, who);
}

{
  const { page, who } = agent;
  const r = () => page.locator('#commissions-heading ~ table tr', { hasText: OPPORTUNITY });
  expectStatuses([422]);
  await r().getByRole('button', { name: 'Dispute' }).click();
  await page.getByText('Say why in 3 to 2,000 characters').waitFor();
  await audit(page, who);
  expectStatuses([]);
  await r().getByLabel('Why do you dispute it?').fill('Our tier is gold since May: 7.5 %');
  await r().getByRole('button', { name: 'Dispute' }).click();
  await expectNotice(page, 'Your dispute is recorded');
  await r().getByText('Disputed', { exact: true }).waitFor();
  await audit(page, who);
}

{
  const { page, who } = finance;
  await page.goto(`${BASE}/programme`);
  const r = () => page.locator('#commissions-heading ~ table tr', { hasText: '20,000.00 EUR' });
  await r().getByLabel('How was it settled?').fill('Gold tier confirmed from May');
  await r().getByLabel('Corrected commission (optional)').fill('one and a half thousand');
  expectStatuses([422]);
  await r().getByRole('button', { name: 'Resolve' }).click();
  await page.getByText('Enter the corrected amount in EUR').waitFor();
  await audit(page, who);
  expectStatuses([]);
  const kept = await r().getByLabel('How was it settled?').inputValue();
  if (kept !== 'Gold tier confirmed from May') fail(`${who}: the resolution typed was lost (${kept})`);
  await r().getByLabel('Corrected commission (optional)').fill('1,500.00');
  await r().getByRole('button', { name: 'Resolve' }).click();
  await expectNotice(page, 'The dispute is resolved');
  await r().getByText('1,500.00 EUR').waitFor();
  await audit(page, who);
}

{
  const { page, who } = agent;
  await page.goto(`${BASE}/programme`);
  const r = page.locator('#commissions-heading ~ table tr', { hasText: OPPORTUNITY });
  await r.getByText('Calculated, waiting for finance').waitFor();
  await r.getByText('Resolved: Gold tier confirmed from May').waitFor();
  await r.getByText('1,500.00 EUR').waitFor();
  await audit(page, who);
}

const bob = await person('partner B');
await signIn(bob, process.env.BOB);
{
  const { page, who } = bob;
  const text = await page.locator('main').innerText();
  if (text.includes(CUSTOMER) || text.includes(OPPORTUNITY) || text.includes('Gold tier confirmed')) {
    fail(`${who}: sees partner A's deal`);
  }
  // Bob, partner B's administrator, invites an agent, finds the invitation listed, and revokes it.
  await page.locator('#invite-email').fill('new.agent@partner-b.example');
  await page.getByRole('button', { name: 'Send the invitation' }).click();
  await expectNotice(page, 'new.agent@partner-b.example');
  const invited = () => page.locator('#partner-invitations-heading ~ table tr', { hasText: 'new.agent@partner-b.example' });
  await invited().getByText('Waiting to be accepted').waitFor();
  await audit(page, who);
  await invited().getByRole('button', { name: 'Revoke the invitation for new.agent@partner-b.example' }).click();
  await expectNotice(page, 'The invitation is revoked: its link no longer works.');
  await invited().getByText('Revoked', { exact: true }).waitFor();
  if (await invited().getByRole('button', { name: /Revoke/ }).count() > 0) fail(`${who}: a revoked invitation offers revoke`);
  await audit(page, who);
}

await finish('partner', 17, 'partner: deal registered, approved, won, commission approved and payable, disputed and resolved; partner B saw none of it, invited an agent and revoked the invitation');
