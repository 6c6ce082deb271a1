// Files on the document page in Chromium, run by tests/browser.rs (BASE_URL, ORG, PASSWORD, STAFF,
// DOCUMENT: a draft of STAFF's with one attachment by reference, CHROMIUM, AXE_PATH), on the
// shared harness: a PNG and a PDF uploaded through the form with its script (the <progress> bar
// follows upload progress events to its max, the new row appears without a reload); the image
// previewed inline (it decodes: naturalWidth > 0); the PDF's preview answered as application/pdf
// inline; the download gives the original bytes; an executable renamed .pdf refused (415) with
// words in the form and nothing added; the PDF removed after a confirmation, then restored. Exits
// non-zero on the first failed step, or at the end when any console error, CSP violation or
// serious/critical axe finding was seen on any page visited.

import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import {
  BASE, ORG, PASSWORD, audit, expectNotice, expectStatuses, fail, finish, heading, person, problems,
} from './harness.mjs';

const CRC = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

function crc32(buf) {
  let c = -1;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** A real RGB PNG of noise, big enough (~0.75 MiB) for the upload to report progress. */
function png(width, height) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  let seed = 7;
  for (let i = 0; i < raw.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    raw[i] = i % (width * 3 + 1) === 0 ? 0 : seed >>> 24;
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 0 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function pdf(size) {
  let s = '%PDF-1.4\n';
  let i = 0;
  while (s.length < size) s += `% line ${i++} of a supplier's statement\n`;
  return Buffer.from(s.slice(0, size), 'latin1');
}

async function signIn(p, email) {
  const { page, who } = p;
  await page.goto(`${BASE}/`);
  await heading(page, 'Sign in to Countersign');
  await page.getByLabel('Organisation').fill(ORG);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await heading(page, 'Inbox');
  await audit(page, who);
}

/** Sends the upload form with its script; returns what the form recorded. */
async function uploadWithScript(p, file, uploadsBefore) {
  const { page } = p;
  const form = page.locator('form[data-upload]');
  await page.getByLabel('File', { exact: true }).setInputFiles(file);
  await page.getByRole('button', { name: 'Attach' }).click();
  await page.waitForFunction(
    (n) => Number(document.querySelector('form[data-upload]').getAttribute('data-uploaded') || '0') > n,
    uploadsBefore,
    { timeout: 20000 },
  );
  const seen = await form.evaluate((f) => {
    const bar = f.querySelector('progress');
    return { events: Number(f.getAttribute('data-progress-events') || '0'), value: bar.value, max: bar.max, hidden: bar.hidden };
  });
  if (seen.events < 1) fail(`${p.who}: no upload progress event for ${file.name}`);
  if (seen.hidden || seen.max < file.buffer.length || seen.value !== seen.max) {
    fail(`${p.who}: the progress bar for ${file.name} did not reach its max: ${JSON.stringify(seen)}`);
  }
  // The new row, without a reload.
  await page.locator('#attachments-table').getByRole('cell', { name: file.name, exact: true }).waitFor();
  return seen;
}

try {
  const staff = await person('staff');
  await signIn(staff, process.env.STAFF);
  const { page } = staff;
  const doc = process.env.DOCUMENT;
  await page.goto(`${BASE}/documents/${doc}`);
  await page.getByRole('heading', { name: 'Attachments' }).waitFor();
  await page.getByText('No stored file: kept by reference').waitFor();
  await audit(page, staff.who);

  // 1. A PNG and a PDF, each with the progress bar driven to its max.
  const image = { name: 'receipt.png', mimeType: 'image/png', buffer: png(512, 512) };
  const statement = { name: 'statement.pdf', mimeType: 'application/pdf', buffer: pdf(400 * 1024) };
  const a = await uploadWithScript(staff, image, 0);
  const b = await uploadWithScript(staff, statement, 1);
  await expectNotice(page, 'The file was attached.');
  await audit(page, staff.who);

  // 2. An executable renamed .pdf: refused (415), said in words, no row added.
  const rows = await page.locator('#attachments-table tbody tr').count();
  expectStatuses([415]);
  const exe = Buffer.concat([Buffer.from('MZ\x90\x00\x03\x00\x00\x00', 'latin1'), Buffer.alloc(50000, 0x90)]);
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'invoice.pdf', mimeType: 'application/pdf', buffer: exe });
  await page.getByRole('button', { name: 'Attach' }).click();
  await page.locator('[data-upload-status]').getByText(/This kind of file is not accepted.*Nothing was stored/).waitFor();
  if ((await page.locator('#attachments-table tbody tr').count()) !== rows) fail('a refused upload added a row');
  expectStatuses([]);

  // 3. The image previews inline: its page shows it from a fresh link, and it decodes.
  await page.goto(`${BASE}/documents/${doc}`);
  await page.getByRole('link', { name: 'Preview receipt.png' }).click();
  await heading(page, 'receipt.png');
  const img = page.locator('#preview-image');
  await img.waitFor();
  await page.waitForFunction(() => document.getElementById('preview-image').complete, null, { timeout: 10000 });
  const width = await img.evaluate((i) => i.naturalWidth);
  if (!(width > 0)) fail(`the image preview did not decode (naturalWidth ${width})`);
  const src = await img.getAttribute('src');
  if (!/^\/api\/v1\/files\/v1\./.test(src)) fail(`the preview is not a signed link: ${src}`);
  await audit(page, staff.who);

  // 4. The PDF's preview answers application/pdf, inline; its download the original bytes.
  await page.goto(`${BASE}/documents/${doc}`);
  const previewHref = await page.getByRole('link', { name: 'Preview statement.pdf' }).getAttribute('href');
  const shown = await page.request.get(`${BASE}${previewHref}`);
  if (shown.status() !== 200) fail(`PDF preview: ${shown.status()}`);
  if (shown.headers()['content-type'] !== 'application/pdf') fail(`PDF preview type: ${shown.headers()['content-type']}`);
  if (!/^inline/.test(shown.headers()['content-disposition'] || '')) fail(`PDF preview disposition: ${shown.headers()['content-disposition']}`);
  if (!shown.url().includes('/api/v1/files/v1.')) fail(`the PDF preview was not a fresh signed link: ${shown.url()}`);
  if (Buffer.compare(await shown.body(), statement.buffer) !== 0) fail('the PDF preview differs from the upload');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download statement.pdf' }).click(),
  ]);
  if (download.suggestedFilename() !== 'statement.pdf') fail(`downloaded as ${download.suggestedFilename()}`);
  const saved = readFileSync(await download.path());
  if (Buffer.compare(saved, statement.buffer) !== 0) fail(`the download differs from the upload (${saved.length} bytes)`);

  // 5. Remove (after a confirmation), then restore.
  await page.goto(`${BASE}/documents/${doc}`);
  await page.getByRole('link', { name: 'Remove statement.pdf' }).click();
  await heading(page, 'Remove “statement.pdf”?');
  await audit(page, staff.who);
  await page.getByRole('button', { name: 'Remove the file' }).click();
  await expectNotice(page, 'The file was removed.');
  await page.getByRole('button', { name: 'Restore statement.pdf' }).waitFor();
  if (await page.getByRole('link', { name: 'Download statement.pdf' }).count()) fail('a removed file still offers its download');
  await audit(page, staff.who);
  await page.getByRole('button', { name: 'Restore statement.pdf' }).click();
  await expectNotice(page, 'The file was restored.');
  await page.getByRole('link', { name: 'Download statement.pdf' }).waitFor();
  await audit(page, staff.who);
  console.log(`progress events: png ${a.events}, pdf ${b.events}`);
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
}

await finish('attachments', 7, 'attachments flow: a PNG and a PDF uploaded with the progress bar to its max; the image previewed inline; the PDF inline as application/pdf; the download byte for byte; an executable renamed .pdf refused; removed after a confirmation and restored');
