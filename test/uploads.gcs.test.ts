/**
 * Uploads on Cloud Storage signed URLs, against patchbay's GCS stand-in, which verifies V4
 * signatures as Cloud Storage does (infra/local/gcs-signed-urls.ts), with URLs signed offline by
 * the real @google-cloud/storage 7 client from a locally generated RSA service-account key:
 * - the stand-in accepts exactly what the URL was signed for, and refuses a tampered signature,
 *   date, expiry, path or query parameter, a wrong method, content type or size range, an unknown
 *   signer and an expired URL, storing nothing; a body outside the signed size range is refused;
 * - the uploads contract (test/contract/uploads.ts) with the Google file store (GcsFiles) on an
 *   embedded ledger: an upload becomes ready when the bucket's finalize notification reaches
 *   `POST /push/uploads`. (The same contract on the whole Google stack: google.emulator.test.ts.)
 */
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcsFiles } from '../shared/adapters/google/gcs-files.js';
import { objectKey } from '../shared/uploads/uploads.js';
import { uploadsContract } from './contract/uploads.js';
import { GCS_PROJECT, postFinalize, type SigningKey, signingKey, startTestGcs, type TestGcs } from './helpers/gcs.js';
import { serveHandler, startServer } from './helpers/server.js';

const BUCKET = 'patchbay-uploads';
let gcs: TestGcs;
let key: SigningKey;
let files: GcsFiles;
let skew = 0; // the stand-in's clock runs this many ms ahead

beforeAll(async () => {
  key = signingKey();
  gcs = await startTestGcs({ buckets: [BUCKET], signers: { [key.client_email]: key.private_key }, now: () => Date.now() + skew });
  files = new GcsFiles(new Storage({ apiEndpoint: gcs.url, projectId: GCS_PROJECT, credentials: key }).bucket(BUCKET));
});
afterAll(() => gcs?.close());

describe('the GCS stand-in verifies V4 signed URLs', () => {
  const body = new TextEncoder().encode('signed bytes');
  const stat = () => files.stat('check/one');

  it('accepts a PUT as signed and a GET as signed; the client signs with the local key', async () => {
    const up = await files.signUpload('check/one', { contentType: 'text/plain', expires: Date.now() + 60_000, maxBytes: 100 });
    expect(up.url.startsWith(`${gcs.url}/${BUCKET}/check/one?`)).toBe(true);
    expect(new URL(up.url).searchParams.get('X-Goog-Credential')).toContain(key.client_email);
    const res = await fetch(up.url, { method: 'PUT', headers: up.headers, body });
    expect(res.status, await res.text()).toBe(200);
    expect(await stat()).toMatchObject({ size: body.length, contentType: 'text/plain' });
    const down = await files.signDownload('check/one', { expires: Date.now() + 60_000, contentType: 'text/plain' });
    const got = await fetch(down.url);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('signed bytes');
    await files.delete('check/one');
  });

  it('refuses tampered, wrong-method, wrong-type, foreign and expired requests, storing nothing', async () => {
    const up = await files.signUpload('check/one', { contentType: 'text/plain', expires: Date.now() + 60_000, maxBytes: 100 });
    const tamper = (k: string, v: string) => {
      const u = new URL(up.url);
      u.searchParams.set(k, v);
      return u.href;
    };
    const sig = new URL(up.url).searchParams.get('X-Goog-Signature') as string;
    const attempts: Array<[string, string, RequestInit]> = [
      ['signature', tamper('X-Goog-Signature', (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1)), { method: 'PUT', headers: up.headers, body }],
      ['expiry', tamper('X-Goog-Expires', '7200'), { method: 'PUT', headers: up.headers, body }],
      [
        'date',
        // a different second (never the signed one: a date signed at :00 becomes :01)
        tamper(
          'X-Goog-Date',
          (new URL(up.url).searchParams.get('X-Goog-Date') as string).replace(/(\d{2})Z$/, (_, s) => (s === '00' ? '01Z' : '00Z')),
        ),
        { method: 'PUT', headers: up.headers, body },
      ],
      ['extra parameter', `${up.url}&x=1`, { method: 'PUT', headers: up.headers, body }],
      ['path', up.url.replace('/check/one?', '/check/two?'), { method: 'PUT', headers: up.headers, body }],
      ['method', up.url, { method: 'POST', headers: up.headers, body }],
      ['method GET', up.url, { method: 'GET' }],
      ['content type', up.url, { method: 'PUT', headers: { ...up.headers, 'content-type': 'text/html' }, body }],
      ['no content type', up.url, { method: 'PUT', headers: { 'x-goog-content-length-range': up.headers['x-goog-content-length-range'] as string }, body }],
      ['no size range', up.url, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body }],
      ['another size range', up.url, { method: 'PUT', headers: { ...up.headers, 'x-goog-content-length-range': '0,1000000' }, body }],
    ];
    for (const [what, url, init] of attempts) {
      const res = await fetch(url, init);
      const text = await res.text();
      expect([400, 403], `${what}: ${res.status} ${text}`).toContain(res.status);
      expect(text, what).toMatch(/SignatureDoesNotMatch|AuthenticationRequired/);
    }
    // Another service account's key signs a well-formed URL the stand-in does not trust.
    const other = signingKey('intruder@demo-patchbay.iam.gserviceaccount.com');
    const foreign = new GcsFiles(new Storage({ apiEndpoint: gcs.url, projectId: GCS_PROJECT, credentials: other }).bucket(BUCKET));
    const f = await foreign.signUpload('check/one', { contentType: 'text/plain', expires: Date.now() + 60_000, maxBytes: 100 });
    expect((await fetch(f.url, { method: 'PUT', headers: f.headers, body })).status).toBe(403);
    // Expired: the stand-in's clock moves past X-Goog-Expires.
    skew = 61_000;
    try {
      const late = await fetch(up.url, { method: 'PUT', headers: up.headers, body });
      expect(late.status).toBe(400);
      expect(await late.text()).toContain('ExpiredToken');
    } finally {
      skew = 0;
    }
    expect(await stat()).toBeNull();
    // and the untouched URL still works
    expect((await fetch(up.url, { method: 'PUT', headers: up.headers, body })).status).toBe(200);
    await files.delete('check/one');
  });

  it('binds an upload to its signed size range: a larger body is refused', async () => {
    const up = await files.signUpload('check/size', { contentType: 'text/plain', expires: Date.now() + 60_000, maxBytes: 5 });
    expect(up.headers['x-goog-content-length-range']).toBe('0,5');
    const res = await fetch(up.url, { method: 'PUT', headers: up.headers, body: 'sixsix' });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('EntityTooLarge');
    expect(await files.stat('check/size')).toBeNull();
    expect((await fetch(up.url, { method: 'PUT', headers: up.headers, body: 'five!' })).status).toBe(200);
    await files.delete('check/size');
  });

  it('binds an upload to its MD5 when one is signed', async () => {
    const md5 = 'XUFAKrxLKna5cZ2REBfFkg=='; // of "hello"
    const up = await files.signUpload('check/md5', { contentType: 'text/plain', expires: Date.now() + 60_000, maxBytes: 100, md5 });
    expect((await fetch(up.url, { method: 'PUT', headers: { ...up.headers, 'content-md5': 'AAAAAAAAAAAAAAAAAAAAAA==' }, body: 'hello' })).status).toBe(403);
    expect((await fetch(up.url, { method: 'PUT', headers: up.headers, body: 'jello' })).status).toBe(400);
    expect(await files.stat('check/md5')).toBeNull();
    expect((await fetch(up.url, { method: 'PUT', headers: up.headers, body: 'hello' })).status).toBe(200);
    expect((await files.stat('check/md5'))?.md5).toBe(md5);
  });
});

uploadsContract('Cloud Storage signed URLs, GCS stand-in', {
  start: (overrides) => startServer({ bucket: BUCKET, ...overrides }, undefined, { files }),
  async land(srv, id) {
    const push = await serveHandler(srv.app.push);
    try {
      expect(await postFinalize(push.url, gcs.url, BUCKET, objectKey(id))).toBe(204);
    } finally {
      push.close();
    }
  },
});
