/**
 * The Cloud Storage blob store against patchbay's own GCS server, driven by the real
 * @google-cloud/storage 7 client (nothing in the client is mocked):
 * - GcsBlobStore passes the BlobStore conformance suite, with single-request (multipart) uploads
 *   and with resumable ones;
 * - the server speaks the wire protocol the client relies on: list order (UTF-8 bytes) and paging,
 *   the ifGenerationMatch=0 precondition under concurrency (exactly one writer wins, on both upload
 *   paths, also when a resumable session opened before the object existed), chunked resumable
 *   uploads and downloads over 1 MiB that pass the client's hash checks, metadata hashes that
 *   agree with the client's own CRC32C, 404/409 mapping, and both ways of pointing the client at it
 *   (`apiEndpoint` and STORAGE_EMULATOR_HOST);
 * - the CLI (dist/infra/local/gcs-server.js) keeps objects in --dir across a restart, and trusts
 *   the signed URLs of the key files given with --signer only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { Bucket, GetFilesOptions, GetFilesResponse } from '@google-cloud/storage';
import { CRC32C, Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c } from '../infra/local/gcs-server.js';
import { GcsBlobStore } from '../shared/adapters/google/gcs-blobs.js';
import { GcsFiles } from '../shared/adapters/google/gcs-files.js';
import { blobConformance } from './conformance/blobs.js';
import { GCS_PROJECT, type SigningKey, signingKey, startTestGcs, storageClient, type TestGcs } from './helpers/gcs.js';
import { tempDir } from './helpers/server.js';

let gcs: TestGcs;
let bucket: Bucket;

beforeAll(async () => {
  gcs = await startTestGcs();
  [bucket] = await gcs.storage.createBucket('patchbay-test');
});
afterAll(async () => {
  await gcs?.close();
});

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('base64');
const clientCrc32c = (b: Uint8Array): string => {
  const c = new CRC32C();
  c.update(Buffer.from(b));
  return c.toString();
};
/** The HTTP status the client reports, whichever error class it used. */
const statusOf = (err: unknown): unknown => {
  const e = err as { code?: unknown; status?: unknown };
  return typeof e.code === 'number' ? e.code : e.status;
};
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

// Each instance lives under its own prefix of the one bucket; the suite adds a random root per test too.
blobConformance('GcsBlobStore', async () => new GcsBlobStore(bucket, { prefix: `conf-${randomUUID()}` }));
blobConformance('GcsBlobStore, resumable uploads', async () => new GcsBlobStore(bucket, { prefix: `conf-${randomUUID()}`, resumableFromBytes: 0 }));

describe('GcsBlobStore', () => {
  it('keeps namespaces apart by prefix and pages through lists larger than a page', async () => {
    const ns = `ns-${randomUUID()}`;
    const a = new GcsBlobStore(bucket, { prefix: `${ns}/a`, pageSize: 7 });
    const b = new GcsBlobStore(bucket, { prefix: `${ns}/ab` });
    const keys = Array.from({ length: 23 }, (_, i) => `k/${String(i).padStart(3, '0')}`);
    await Promise.all(keys.map((k) => a.put(k, utf8(k))));
    await b.put('k/000', utf8('other namespace'));
    expect(await a.list('')).toEqual(keys);
    expect(await a.list('k/01')).toEqual(keys.slice(10, 20));
    expect(await b.list('')).toEqual(['k/000']);
    expect(Buffer.from((await a.get('k/000')) as Uint8Array).toString()).toBe('k/000');
    const [files] = await bucket.getFiles({ prefix: `${ns}/a/` });
    expect(files.map((f) => f.name)).toEqual(keys.map((k) => `${ns}/a/${k}`));
  });

  it('refuses keys the embedded store refuses', async () => {
    const s = new GcsBlobStore(bucket);
    await expect(s.put('../x', utf8('x'))).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(s.get('a//b')).rejects.toMatchObject({ code: 'invalid_request' });
  });

  it('reports a missing bucket as an error, not as a missing key', async () => {
    const s = new GcsBlobStore(gcs.storage.bucket('no-such-bucket'));
    expect(statusOf(await rejection(s.put('k', utf8('x'))))).toBe(404);
    expect(await s.get('k')).toBeNull(); // a GET cannot tell the two apart, as on GCS
  });
});

describe('gcs-server speaking to @google-cloud/storage', () => {
  it('computes CRC32C as GCS does (the standard check value, and the client library agrees)', () => {
    expect(crc32c(utf8('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    const data = randomBytes(10_000);
    const c = new CRC32C();
    c.update(data);
    expect(crc32c(data)).toBe(c.valueOf() >>> 0);
  });

  it('lists in UTF-8 byte order with prefix, delimiter, maxResults and pageToken', async () => {
    const root = `list-${randomUUID()}/`;
    // JavaScript's default sort would put the astral 😀 (U+1F600) before U+FFFD; GCS orders by code point
    const names = ['z', 'A', 'é', '\uFFFD', '😀', 'd/1', 'd/2', 'd/', 'e/x/y', 'e0'];
    await Promise.all(names.map((n) => bucket.file(root + n).save(utf8(n), { resumable: false })));
    const ordered = ['A', 'd/', 'd/1', 'd/2', 'e/x/y', 'e0', 'z', 'é', '\uFFFD', '😀'].map((n) => root + n);

    const [all] = await bucket.getFiles({ prefix: root });
    expect(all.map((f) => f.name)).toEqual(ordered);

    const pages: string[][] = [];
    let query: GetFilesOptions | null = { prefix: root, maxResults: 3, autoPaginate: false };
    while (query) {
      const [files, next]: GetFilesResponse = await bucket.getFiles(query);
      pages.push(files.map((f) => f.name));
      query = next ?? null;
    }
    expect(pages.map((p) => p.length)).toEqual([3, 3, 3, 1]);
    expect(pages.flat()).toEqual(ordered);

    // with a delimiter, maxResults counts items plus prefixes, and a prefix is returned once across pages
    const seen: { items: string[]; prefixes: string[] }[] = [];
    let q: GetFilesOptions | null = { prefix: root, delimiter: '/', maxResults: 2, autoPaginate: false };
    while (q) {
      const [files, next, resp]: GetFilesResponse = await bucket.getFiles(q);
      seen.push({
        items: files.map((f) => f.name.slice(root.length)),
        prefixes: ((resp as { prefixes?: string[] }).prefixes ?? []).map((p) => p.slice(root.length)),
      });
      q = next ?? null;
    }
    expect(seen).toEqual([
      { items: ['A'], prefixes: ['d/'] },
      { items: ['e0'], prefixes: ['e/'] },
      { items: ['z', 'é'], prefixes: [] },
      { items: ['\uFFFD', '😀'], prefixes: [] },
    ]);

    const [sub, , subResp] = await bucket.getFiles({ prefix: `${root}d/`, delimiter: '/', includeTrailingDelimiter: true, autoPaginate: false });
    expect(sub.map((f) => f.name)).toEqual([`${root}d/`, `${root}d/1`, `${root}d/2`]);
    expect((subResp as { prefixes?: string[] }).prefixes).toBeUndefined();
    const [range] = await bucket.getFiles({ prefix: root, startOffset: `${root}d/1`, endOffset: `${root}e0` });
    expect(range.map((f) => f.name)).toEqual([`${root}d/1`, `${root}d/2`, `${root}e/x/y`]);
  });

  it('lets exactly one of many concurrent ifGenerationMatch=0 uploads win, multipart and resumable alike', async () => {
    for (const resumable of [false, true]) {
      const file = bucket.file(`race-${randomUUID()}`);
      const bodies = Array.from({ length: 6 }, (_, i) => Buffer.alloc(50_000, i + 1));
      const results = await Promise.allSettled(bodies.map((b) => file.save(b, { resumable, preconditionOpts: { ifGenerationMatch: 0 } })));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(won, `resumable: ${resumable}`).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(statusOf(r.reason)).toBe(412);
      const [data] = await file.download();
      expect(data.equals(bodies[won[0] as number] as Buffer)).toBe(true);
    }
  });

  it('checks ifGenerationMatch=0 again when a resumable session completes', async () => {
    const name = `late-${randomUUID()}`;
    const base = `${gcs.url}/upload/storage/v1/b/${bucket.name}/o`;
    const open = await fetch(`${base}?uploadType=resumable&name=${encodeURIComponent(name)}&ifGenerationMatch=0`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-upload-content-type': 'text/plain' },
      body: '{}',
    });
    expect(open.status).toBe(200);
    const session = open.headers.get('location') as string;
    expect(session).toContain('upload_id=');
    // the first chunk is accepted and the status query reports it
    const chunk = await fetch(session, { method: 'PUT', headers: { 'content-range': 'bytes 0-4/*' }, body: 'early' });
    expect(chunk.status).toBe(308);
    expect(chunk.headers.get('range')).toBe('bytes=0-4');
    const status = await fetch(session, { method: 'PUT', headers: { 'content-range': 'bytes */*' } });
    expect([status.status, status.headers.get('range')]).toEqual([308, 'bytes=0-4']);
    // meanwhile another writer creates the object
    await bucket.file(name).save('winner', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    const last = await fetch(session, { method: 'PUT', headers: { 'content-range': 'bytes 5-9/10' }, body: ' late' });
    expect(last.status).toBe(412);
    expect((await bucket.file(name).download())[0].toString()).toBe('winner');
  });

  it('uploads in resumable chunks and downloads more than 1 MiB, passing the client’s crc32c and md5 checks', async () => {
    const data = randomBytes(1024 * 1024 + 12_345);
    const file = bucket.file(`big/${randomUUID()}.bin`);
    // chunkSize makes the client send several PUTs to the session (308 with Range between them)
    await file.save(data, { resumable: true, chunkSize: 512 * 1024, contentType: 'application/x-patchbay' });
    const [crcChecked] = await file.download();
    expect(crcChecked.equals(data)).toBe(true);
    const [md5Checked] = await file.download({ validation: 'md5' });
    expect(md5Checked.equals(data)).toBe(true);
    const [slice] = await file.download({ start: 1_000_000, end: 1_000_099 });
    expect(slice.equals(data.subarray(1_000_000, 1_000_100))).toBe(true);
    const [tail] = await file.download({ end: -10 });
    expect(tail.equals(data.subarray(data.length - 10))).toBe(true);

    // the raw response: what the client's checks read
    const res = await fetch(`${gcs.url}/storage/v1/b/${bucket.name}/o/${encodeURIComponent(file.name)}?alt=media`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(data.length));
    expect(res.headers.get('content-type')).toBe('application/x-patchbay');
    expect(res.headers.get('x-goog-hash')).toBe(`crc32c=${clientCrc32c(data)},md5=${md5(data)}`);
    expect(res.headers.get('x-goog-stored-content-encoding')).toBe('identity');
    expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
  });

  it('returns object metadata with size, contentType, hashes and increasing generations', async () => {
    const file = bucket.file(`meta/${randomUUID()}.json`);
    const v1 = utf8('{"v":1}');
    await file.save(v1, { resumable: false, contentType: 'application/json', metadata: { cacheControl: 'no-cache', metadata: { scope: 's1' } } });
    const [m1] = await file.getMetadata();
    expect(m1).toMatchObject({
      name: file.name,
      bucket: bucket.name,
      size: String(v1.length),
      contentType: 'application/json',
      cacheControl: 'no-cache',
      metadata: { scope: 's1' },
      md5Hash: md5(v1),
      crc32c: clientCrc32c(v1),
      metageneration: '1',
    });
    const v2 = randomBytes(70_000);
    await file.save(v2, { resumable: true, contentType: 'application/octet-stream' });
    const [m2] = await file.getMetadata();
    expect(m2).toMatchObject({ size: String(v2.length), contentType: 'application/octet-stream', md5Hash: md5(v2), crc32c: clientCrc32c(v2) });
    expect(BigInt(m2.generation as string)).toBeGreaterThan(BigInt(m1.generation as string));
    // a precondition on the old generation no longer holds
    expect(statusOf(await rejection(file.save(utf8('x'), { resumable: false, preconditionOpts: { ifGenerationMatch: Number(m1.generation) } })))).toBe(412);
    await file.save(utf8('y'), { resumable: false, preconditionOpts: { ifGenerationMatch: Number(m2.generation) } });
    expect((await file.download())[0].toString()).toBe('y');
  });

  it('refuses an upload whose bytes do not match the hash sent with them', async () => {
    const file = bucket.file(`hash-${randomUUID()}`);
    const err = await rejection(file.save(utf8('payload'), { resumable: false, metadata: { md5Hash: md5(utf8('other')) } }));
    expect(statusOf(err)).toBe(400);
    expect((await file.exists())[0]).toBe(false);
  });

  it('maps missing objects and buckets to 404 and an existing bucket to 409', async () => {
    const missing = bucket.file(`missing-${randomUUID()}`);
    expect(statusOf(await rejection(missing.download()))).toBe(404);
    expect(statusOf(await rejection(missing.getMetadata()))).toBe(404);
    expect(statusOf(await rejection(missing.delete()))).toBe(404);
    await missing.delete({ ignoreNotFound: true });
    expect((await missing.exists())[0]).toBe(false);

    const nobucket = gcs.storage.bucket(`nobucket-${randomUUID().slice(0, 8)}`);
    expect((await nobucket.exists())[0]).toBe(false);
    expect(statusOf(await rejection(nobucket.file('x').save('x', { resumable: false })))).toBe(404);
    expect(statusOf(await rejection(nobucket.getFiles()))).toBe(404);
    await nobucket.create();
    expect((await nobucket.exists())[0]).toBe(true);
    expect(statusOf(await rejection(nobucket.create()))).toBe(409);
    await nobucket.file('x').save('x', { resumable: false });
    expect(statusOf(await rejection(nobucket.delete()))).toBe(409);
    await nobucket.file('x').delete();
    await nobucket.delete();
    expect((await nobucket.exists())[0]).toBe(false);
  });

  it('serves a client configured with STORAGE_EMULATOR_HOST (JSON calls without /storage/v1)', async () => {
    const saved = process.env.STORAGE_EMULATOR_HOST;
    process.env.STORAGE_EMULATOR_HOST = gcs.url;
    let storage: Storage;
    try {
      storage = new Storage({ projectId: GCS_PROJECT });
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
    const b = storage.bucket(bucket.name);
    const store = new GcsBlobStore(b, { prefix: `env-${randomUUID()}`, resumableFromBytes: 100 });
    const small = utf8('small');
    const large = randomBytes(1000);
    expect(await store.put('a/small', small, { ifAbsent: true })).toBe(true);
    expect(await store.put('a/large', large, { ifAbsent: true })).toBe(true);
    expect(await store.put('a/large', small, { ifAbsent: true })).toBe(false);
    expect(Buffer.from((await store.get('a/large')) as Uint8Array).equals(large)).toBe(true);
    expect(await store.list('a/')).toEqual(['a/large', 'a/small']);
    await store.delete('a/small');
    await store.delete('a/small');
    expect(await store.get('a/small')).toBeNull();
    expect((await b.exists())[0]).toBe(true);
  });
});

describe('gcs-server CLI', () => {
  /** Starts dist/infra/local/gcs-server.js (built by the global setup) and reads its url from the first line. */
  async function spawnCli(args: string[]): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(process.execPath, ['dist/infra/local/gcs-server.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
        const line = /^(http:\/\/\S+)\n/.exec(out);
        if (line) resolve(line[1] as string);
      });
      child.stderr?.on('data', (c: Buffer) => {
        out += c.toString();
      });
      child.once('exit', (code) => reject(new Error(`gcs-server exited with ${code}: ${out}`)));
    });
    return { url, child };
  }
  const stop = (child: ChildProcess) =>
    new Promise<number | null>((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.kill('SIGTERM');
    });

  it('keeps buckets and objects in --dir across a restart', async () => {
    const dir = tempDir('patchbay-gcs-');
    try {
      const first = await spawnCli(['--port', '0', '--dir', dir, '--bucket', 'persisted']);
      const s1 = new GcsBlobStore(storageClient(first.url).bucket('persisted'));
      const data = randomBytes(200_000);
      await s1.put('bundles/b1', data);
      await s1.put('bundles/b2', utf8('old'));
      await s1.put('bundles/b2', utf8('new'));
      await s1.put('gone', utf8('x'));
      await s1.delete('gone');
      const [meta1] = await storageClient(first.url).bucket('persisted').file('bundles/b2').getMetadata();
      expect(await stop(first.child)).toBe(0);

      const second = await spawnCli(['--port', '0', '--dir', dir]);
      try {
        const b2 = storageClient(second.url).bucket('persisted');
        const s2 = new GcsBlobStore(b2);
        expect(await s2.list('')).toEqual(['bundles/b1', 'bundles/b2']); // 'gone' stays gone
        expect(Buffer.from((await s2.get('bundles/b1')) as Uint8Array).equals(data)).toBe(true);
        expect(Buffer.from((await s2.get('bundles/b2')) as Uint8Array).toString()).toBe('new');
        expect(await s2.put('bundles/b1', utf8('x'), { ifAbsent: true })).toBe(false);
        await s2.put('bundles/b2', utf8('newer'));
        // on disk, bytes are staged before the commit: the precondition must still pick one winner
        const won = await Promise.all([1, 2, 3, 4].map((i) => s2.put('race', Buffer.alloc(30_000, i), { ifAbsent: true })));
        expect(won.filter(Boolean)).toHaveLength(1);
        expect(Buffer.from((await s2.get('race')) as Uint8Array).equals(Buffer.alloc(30_000, won.indexOf(true) + 1))).toBe(true);
        const [meta2] = await b2.file('bundles/b2').getMetadata();
        expect(BigInt(meta2.generation as string)).toBeGreaterThan(BigInt(meta1.generation as string));
      } finally {
        expect(await stop(second.child)).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('trusts the signed URLs of the key files given with --signer, and no others', async () => {
    const dir = tempDir('patchbay-gcs-');
    try {
      const key = signingKey(undefined, dir);
      const { url, child } = await spawnCli(['--port', '0', '--bucket', 'signed', '--signer', key.file as string]);
      try {
        const signed = (k: SigningKey) => new GcsFiles(new Storage({ apiEndpoint: url, projectId: GCS_PROJECT, credentials: k }).bucket('signed'));
        const grant = { contentType: 'text/plain', expires: Date.now() + 60_000, maxBytes: 10 };
        const ok = await signed(key).signUpload('f', grant);
        expect((await fetch(ok.url, { method: 'PUT', headers: ok.headers, body: 'hi' })).status).toBe(200);
        const other = await signed(signingKey('other@demo-patchbay.iam.gserviceaccount.com')).signUpload('g', grant);
        expect((await fetch(other.url, { method: 'PUT', headers: other.headers, body: 'hi' })).status).toBe(403);
      } finally {
        await stop(child);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
