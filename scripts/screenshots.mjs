// Captures the main pages of a running demo (scripts/screenshots.sh starts it and passes
// BASE_URL, PASSWORD and OUT). Each shot signs in as the demo person who would see that page.
// A page that answers other than 200 fails the run: a screenshot of an error is not a picture of
// the product.

import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL;
const PASSWORD = process.env.PASSWORD;
const OUT = process.env.OUT || 'docs/screenshots';
const ORG = 'acme';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking'],
  headless: true,
});

async function as(email) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, colorScheme: 'light' });
  const page = await context.newPage();
  if (email) {
    await page.goto(`${BASE}/sign-in`);
    await page.fill('#organisation', ORG);
    await page.fill('#email', email);
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  }
  return { context, page };
}

async function shot(page, path, name) {
  const r = await page.goto(`${BASE}${path}`);
  if (!r || r.status() !== 200) throw new Error(`${path} answered ${r ? r.status() : 'nothing'}`);
  await page.screenshot({ path: `${OUT}/${name}.png` });
  console.log(`${OUT}/${name}.png  ${path}`);
}

try {
  {
    const { context, page } = await as(null);
    await shot(page, '/sign-in', 'sign-in');
    await shot(page, '/security', 'security');
    await context.close();
  }
  {
    // The head of operations: an inbox with approvals waiting.
    const { context, page } = await as('hana@acme.example');
    await shot(page, '/', 'inbox');
    await context.close();
  }
  {
    // The MD on a voucher over the threshold: the ladder, the actions box, the discussion.
    const { context, page } = await as('mona@acme.example');
    await page.goto(`${BASE}/`);
    const link = page.locator('a[href^="/documents/"]:not([href="/documents/new"])').first();
    const href = await link.getAttribute('href');
    if (!href) throw new Error("the MD's inbox links no document");
    await shot(page, href, 'document');
    await context.close();
  }
  {
    const { context, page } = await as('sam@acme.example');
    await shot(page, '/documents/new', 'raise');
    await context.close();
  }
  {
    const { context, page } = await as('finn@acme.example');
    await shot(page, '/periods', 'periods');
    await context.close();
  }
  for (const [email, path, name] of [
    ['ada@acme.example', '/members', 'members'],
    ['audrey@acme.example', '/audit', 'audit'],
    ['ada@acme.example', '/settings', 'settings'],
    ['sam@acme.example', '/account', 'account'],
  ]) {
    const { context, page } = await as(email);
    await shot(page, path, name);
    await context.close();
  }
} finally {
  await browser.close();
}
