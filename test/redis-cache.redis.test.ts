/**
 * The Upstash hot cache on a real redis-server behind the Upstash REST gateway, driven by the real
 * `@upstash/redis` client. Checks: UpstashCache passes the HotCache conformance suite; an entry
 * never moves backwards even when two instances race shuffled puts; 512 KiB and unicode states
 * round-trip whatever the client's deserialization and encoding settings; Redis errors surface as
 * thrown errors. And the gateway speaks the protocol the client expects: base64 encoding on and
 * off, binary-safe values, pipelines (auto-pipelining), atomic multi-exec, error replies, 401 on a
 * wrong token, and the compiled CLI.
 */
import { randomUUID } from 'node:crypto';
import { Redis, type RedisConfigNodejs } from '@upstash/redis';
import { Redis as IORedis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstashCache } from '../shared/adapters/google/redis-cache.js';
import { type Json, jsonBytes } from '../shared/json.js';
import { cacheConformance } from './conformance/cache.js';
import { freePort, spawnService } from './helpers/proc.js';
import { shuffled } from './helpers/random.js';
import { noRedis, type RedisStack, startRedis } from './helpers/redis.js';

const uid = (): string => randomUUID().slice(0, 8);

describe.skipIf(noRedis())('Upstash hot cache (redis-server + gateway)', () => {
  let stack: RedisStack;
  let direct: IORedis; // a plain TCP client, to look at and disturb Redis behind the gateway's back

  beforeAll(async () => {
    stack = await startRedis();
    direct = new IORedis(stack.redisUrl);
  });
  afterAll(async () => {
    await direct?.quit();
    await stack?.stop();
  });

  type Opts = Omit<RedisConfigNodejs, 'url' | 'token'>;
  const client = (opts: Opts = {}): Redis => new Redis({ url: stack.gatewayUrl, token: stack.token, enableTelemetry: false, ...opts });

  /** A raw request to the gateway, to check the wire format itself. */
  const raw = async (
    path: string,
    body: unknown,
    opts: { base64?: boolean; token?: string | null; rawBody?: Buffer } = {},
    // biome-ignore lint/suspicious/noExplicitAny: wire responses are inspected loosely
  ): Promise<{ status: number; json: any }> => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const token = opts.token === undefined ? stack.token : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (opts.base64) headers['upstash-encoding'] = 'base64';
    const res = await fetch(stack.gatewayUrl + path, { method: 'POST', headers, body: opts.rawBody ?? JSON.stringify(body) });
    return { status: res.status, json: await res.json() };
  };

  cacheConformance('UpstashCache', async () => new UpstashCache(client({ automaticDeserialization: false }), { prefix: `conf-${uid()}:` }));

  describe('UpstashCache', () => {
    it('a 512 KiB state with unicode round-trips exactly', async () => {
      const cache = new UpstashCache(client(), { prefix: `big-${uid()}:` });
      const line = 'héllo 世界 🎉 "quoted" \\ back\nslash\u0000 ';
      const itemBytes = jsonBytes({ i: 0, line }) + 1; // the smallest item, so the count is enough
      const state: Json = { items: Array.from({ length: Math.ceil((512 * 1024) / itemBytes) }, (_, i) => ({ i, line })) };
      expect(jsonBytes(state)).toBeGreaterThanOrEqual(512 * 1024);
      expect(await cache.put('s', 1, state)).toBe(true);
      expect(await cache.get('s')).toEqual({ ii: 1, state });
    });

    it('stores one string "<ii>\\n<JSON text>" under prefix+id, with the TTL when one is set', async () => {
      const prefix = `fmt-${uid()}:`;
      await new UpstashCache(client(), { prefix, ttlSeconds: 3600 }).put('a', 5, { a: 'é' });
      expect(await direct.get(`${prefix}a`)).toBe('5\n{"a":"é"}');
      const ttl = await direct.ttl(`${prefix}a`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(3600);
      await new UpstashCache(client(), { prefix }).put('b', 1, 1);
      expect(await direct.ttl(`${prefix}b`)).toBe(-1); // no expiry
    });

    it('reads and writes the same whatever the client deserialization and response encoding', async () => {
      const prefix = `mode-${uid()}:`;
      const caches = [
        new UpstashCache(client(), { prefix }), // the client's defaults: automatic deserialization on, base64
        new UpstashCache(client({ automaticDeserialization: false, responseEncoding: false, enableAutoPipelining: false }), { prefix }),
        new UpstashCache({ url: stack.gatewayUrl, token: stack.token }, { prefix }),
      ];
      // values automatic deserialization would get wrong if it ever saw the JSON text alone
      const states: Json[] = ['42', 42, '"quoted"', 'null', null, 'true', [1, '2'], { n: '1.0' }, 'ünïcödé ✓'];
      for (const [i, state] of states.entries()) {
        const writer = caches[i % caches.length] as UpstashCache;
        expect(await writer.put(`s${i}`, i + 1, state)).toBe(true);
        for (const reader of caches) expect(await reader.get(`s${i}`)).toEqual({ ii: i + 1, state });
      }
    });

    it('never moves backwards when two instances race shuffled puts', async () => {
      const prefix = `race-${uid()}:`;
      const a = new UpstashCache(client(), { prefix });
      const b = new UpstashCache(client(), { prefix });
      const n = 60;
      for (const round of [1, 2]) {
        const id = `scope-${round}`;
        const order = shuffled(n, round);
        const results = await Promise.all(order.map((ii, k) => (k % 2 === 0 ? a : b).put(id, ii, { ii, by: k % 2 === 0 ? 'a' : 'b' })));
        expect(results[order.indexOf(n)]).toBe(true); // nothing at or above n exists, so n cannot lose
        const final = { ii: n, state: { ii: n, by: order.indexOf(n) % 2 === 0 ? 'a' : 'b' } };
        expect(await a.get(id)).toEqual(final);
        expect(await b.get(id)).toEqual(final);
        expect(await b.put(id, n - 1, { late: true })).toBe(false);
        expect(await a.get(id)).toEqual(final);
      }
    });

    it('a put after SCRIPT FLUSH falls back from EVALSHA to EVAL', async () => {
      const cache = new UpstashCache(client(), { prefix: `flush-${uid()}:` });
      expect(await cache.put('s', 1, 'one')).toBe(true);
      await direct.script('FLUSH');
      expect(await cache.put('s', 2, 'two')).toBe(true);
      expect(await cache.put('s', 1, 'one again')).toBe(false);
      expect(await cache.get('s')).toEqual({ ii: 2, state: 'two' });
    });

    it('Redis errors and foreign values surface as thrown errors', async () => {
      const prefix = `err-${uid()}:`;
      const cache = new UpstashCache(client(), { prefix });
      await direct.hset(`${prefix}hash`, 'f', 'v');
      await expect(cache.get('hash')).rejects.toThrow(/WRONGTYPE/);
      await expect(cache.put('hash', 1, {})).rejects.toThrow(/WRONGTYPE/);
      await direct.set(`${prefix}foreign`, 'not an entry');
      await expect(cache.get('foreign')).rejects.toThrow(/does not hold an entry/);
      await expect(cache.put('s', -1, {})).rejects.toThrow(RangeError);
    });

    it('an unreachable server is a thrown error, not a miss', async () => {
      const cache = new UpstashCache({ url: `http://127.0.0.1:${await freePort()}`, token: 't' }, { prefix: 'x:' });
      await expect(cache.get('s')).rejects.toThrow();
      await expect(cache.put('s', 1, {})).rejects.toThrow();
    });
  });

  describe('gateway protocol', () => {
    it('strings, unicode and binary values round-trip byte for byte', async () => {
      const redis = client({ automaticDeserialization: false });
      const text = 'héllo 世界 🎉 "q" \\ \n\r\t \u0000 end';
      const k = `str-${uid()}`;
      expect(await redis.set(k, text)).toBe('OK');
      expect(await redis.get(k)).toBe(text);
      expect(await direct.get(k)).toBe(text);

      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const bin = `bin-${uid()}`;
      await direct.set(bin, bytes);
      const got = await raw('/', ['GET', bin], { base64: true });
      expect(Buffer.from(got.json.result, 'base64').equals(bytes)).toBe(true);
      // path form: a POST body is the last argument, byte for byte
      const bin2 = `bin2-${uid()}`;
      expect((await raw(`/set/${bin2}`, null, { rawBody: bytes })).json).toEqual({ result: 'OK' });
      expect((await direct.getBuffer(bin2))?.equals(bytes)).toBe(true);
    });

    it('Upstash-Encoding: base64 encodes every string but a whole-result OK; numbers, nil and nested arrays keep their shape', async () => {
      const k = `enc-${uid()}`;
      const b64 = (s: string): string => Buffer.from(s).toString('base64');
      expect((await raw('/', ['SET', k, 'värde'], { base64: true })).json).toEqual({ result: 'OK' });
      expect((await raw('/', ['GET', k], { base64: true })).json).toEqual({ result: b64('värde') });
      expect((await raw('/', ['GET', k])).json).toEqual({ result: 'värde' });
      expect((await raw('/', ['STRLEN', k], { base64: true })).json).toEqual({ result: 6 });
      expect((await raw('/', ['GET', `missing-${uid()}`], { base64: true })).json).toEqual({ result: null });
      const lua = "return {'a', 7, {'ü', false}, 'OK'}"; // Lua false is nil
      expect((await raw('/', ['EVAL', lua, 0], { base64: true })).json).toEqual({ result: [b64('a'), 7, [b64('ü'), null], b64('OK')] });
      expect((await raw('/', ['EVAL', lua, 0])).json).toEqual({ result: ['a', 7, ['ü', null], 'OK'] });
      expect((await raw('/', ['PING'], { base64: true })).json).toEqual({ result: b64('PONG') });
      // lower-case names work too, and their replies are not reshaped (no ioredis transformers)
      const h = `hash-${uid()}`;
      await raw('/', ['hset', h, 'f', 'v']);
      expect((await raw('/', ['hgetall', h])).json).toEqual({ result: ['f', 'v'] });
      // and the client decodes both encodings to the same values
      for (const responseEncoding of ['base64', false] as const) {
        const redis = client({ responseEncoding, automaticDeserialization: false });
        expect(await redis.get(k)).toBe('värde');
        expect(await redis.eval(lua, [], [])).toEqual(['a', 7, ['ü', null], 'OK']);
      }
    });

    it('auto-pipelining sends concurrent commands as one /pipeline request and gets each its own reply', async () => {
      const redis = client({ automaticDeserialization: false });
      const counter = (): number => (redis as unknown as { pipelineCounter: number }).pipelineCounter;
      const k = `pipe-${uid()}`;
      const before = counter();
      const replies = await Promise.all(Array.from({ length: 10 }, () => redis.incr(k)));
      expect(counter() - before).toBe(1);
      expect(replies).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // one failing command fails only itself
      const t = `text-${uid()}`;
      await redis.set(t, 'abc');
      const settled = await Promise.allSettled([redis.incr(k), redis.incr(t), redis.incr(k)]);
      expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : 'rejected'))).toEqual([11, 'rejected', 12]);
      expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/not an integer/);
    });

    it('an error reply is a 400 {error} for one command and a per-command {error} in a pipeline', async () => {
      const t = `text-${uid()}`;
      await direct.set(t, 'abc');
      const one = await raw('/', ['INCR', t]);
      expect(one.status).toBe(400);
      expect(one.json.error).toMatch(/^ERR value is not an integer/);
      await expect(client({ enableAutoPipelining: false }).incr(t)).rejects.toThrow(/not an integer/);
      const many = await raw('/pipeline', [
        ['SET', `${t}-2`, '1'],
        ['INCR', t],
        ['INCR', `${t}-2`],
      ]);
      expect(many.status).toBe(200);
      expect(many.json).toEqual([{ result: 'OK' }, { error: expect.stringMatching(/not an integer/) }, { result: 2 }]);
      const unknown = await raw('/', ['NOSUCHCOMMAND']);
      expect(unknown.status).toBe(400);
      expect(unknown.json.error).toMatch(/unknown command/);
    });

    it('multi-exec is all-or-nothing on a queueing error, where a pipeline is not', async () => {
      const k = `tx-${uid()}`;
      const tx = await raw('/multi-exec', [['SET', k, 'x'], ['GET']]); // GET without a key: refused while queueing
      expect(tx.status).toBe(400);
      expect(tx.json.error).toMatch(/EXECABORT/);
      expect(await direct.exists(k)).toBe(0);
      const pipe = await raw('/pipeline', [['SET', k, 'x'], ['GET']]);
      expect(pipe.status).toBe(200);
      expect(await direct.get(k)).toBe('x');
    });

    it('multi-exec runs as one step: a blocking pop inside it does not wait; a runtime error fails only its command', async () => {
      // Redis runs a transaction without serving anyone else, so BLPOP inside MULTI answers nil at
      // once. Sent as a plain pipeline it would block until the list gets an element: the push
      // below is only a safety net that ends such a wait (and then the pop returns the element).
      const list = `list-${uid()}`;
      const k = `after-${uid()}`;
      const net = setTimeout(() => void direct.lpush(list, 'pushed'), 20_000);
      const tx = await raw('/multi-exec', [
        ['BLPOP', list, '0'],
        ['SET', k, 'done'],
      ]);
      clearTimeout(net);
      expect(tx.json).toEqual([{ result: null }, { result: 'OK' }]);

      const redis = client({ automaticDeserialization: false });
      const t = `text-${uid()}`;
      const mixed = await redis.multi().set(t, 'a').incr(t).set(`${t}-2`, 'b').exec({ keepErrors: true });
      expect(mixed.map((r) => r.error ?? r.result)).toEqual(['OK', expect.stringMatching(/not an integer/), 'OK']);
      expect(await direct.get(`${t}-2`)).toBe('b');
    });

    it('a wrong or missing token is 401; the _token query parameter is accepted', async () => {
      expect((await raw('/', ['PING'], { token: 'wrong' })).status).toBe(401);
      const none = await raw('/', ['PING'], { token: null });
      expect(none.status).toBe(401);
      expect(none.json).toEqual({ error: 'Unauthorized' });
      expect((await raw(`/?_token=${stack.token}`, ['PING'], { token: null })).json).toEqual({ result: 'PONG' });
      await expect(new Redis({ url: stack.gatewayUrl, token: 'wrong', enableTelemetry: false }).get('x')).rejects.toThrow(/Unauthorized/);
    });

    it('the compiled CLI serves the same protocol', async () => {
      const token = `cli-${uid()}`;
      const cli = spawnService(process.execPath, ['dist/infra/local/upstash-gateway.js', '--redis-url', stack.redisUrl, '--port', '0', '--token', token]);
      try {
        const url = await new Promise<string>((resolve, reject) => {
          let out = '';
          cli.child.stdout?.on('data', (c: Buffer) => {
            out += c.toString();
            const line = out.split('\n')[0];
            if (out.includes('\n') && line) resolve(line);
          });
          cli.child.once('exit', (code) => reject(new Error(`gateway CLI exited (${code}):\n${cli.output()}`)));
        });
        expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
        const redis = new Redis({ url, token, enableTelemetry: false, automaticDeserialization: false });
        const k = `cli-${uid()}`;
        expect(await redis.set(k, 'via cli')).toBe('OK');
        expect(await direct.get(k)).toBe('via cli');
      } finally {
        await cli.stop();
      }
    });
  });
});
