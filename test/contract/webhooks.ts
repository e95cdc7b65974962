/**
 * Webhooks after commit (issue 13, part 5) over real HTTP, on each stack's own delivery
 * (embedded: in-process with its backoff; Google: a Pub/Sub push subscription to
 * `/push/webhooks`), to a real receiver on a local socket that verifies every delivery with the
 * `standardwebhooks` library's own verifier, using the secret the admin reads from the API.
 *
 * Guarantee 4 for webhooks: each webhook gets a scope's matching patches in index order, at least
 * once: through failures (the same patch again, with the same webhook-id, before any later one),
 * a redelivered event (a duplicate: nothing sent again), a restart of the server (what was missed
 * is delivered after it), and a patch that keeps failing (dead-lettered after
 * PATCHBAY_WEBHOOK_MAX_ATTEMPTS, then the next patch goes). A response's write-back patches are
 * applied as `domain:<domain>` to scopes of that domain only. Only the domain's admin sees the
 * webhooks, their secrets and dead letters; refusals change nothing.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import type { TestServer } from '../helpers/server.js';
import { request } from '../helpers/server.js';
import type { SseCollector } from '../helpers/sse.js';
import { clientIn, upload, userId, waitDone } from './config.js';

/** A server whose consumers are delivered to, which can be restarted on the same storage. */
export interface WebhookHarness {
  srv: TestServer;
  /** Stops the server (keeping its data), runs `whileDown`, and starts another on the same storage and delivery. */
  restart(whileDown?: () => void): Promise<void>;
  close(): Promise<void>;
}
export type StartWebhooks = (overrides: Partial<Config>) => Promise<WebhookHarness>;

const DOMAIN = 'hooks.example.com';
const MAX_ATTEMPTS = 3;

interface Delivery {
  path: string;
  headers: Record<string, string>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: payloads are inspected loosely in tests
  json: any;
  status: number;
}

type Answer = { status: number; body?: unknown };

/** A webhook receiver on 127.0.0.1: records every request, answers what `respond` says. */
async function startReceiver(): Promise<{ url: string; got: Delivery[]; respond: (d: Delivery) => Answer; close: () => void }> {
  const got: Delivery[] = [];
  const r = {
    url: '',
    got,
    respond: (_d: Delivery): Answer => ({ status: 204 }),
    close: () => {},
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const d: Delivery = { path: req.url ?? '', headers: req.headers as Record<string, string>, body, json: JSON.parse(body), status: 0 };
      const answer = r.respond(d);
      d.status = answer.status;
      got.push(d);
      if (answer.body === undefined) {
        res.writeHead(answer.status);
        res.end();
      } else {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer.body));
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  r.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return r;
}

/** Polls `get` until `ok` holds of its value (bounded); resolves with that value. */
async function until<T>(get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitFor(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function webhooksContract(stack: string, start: StartWebhooks): void {
  describe(`webhooks after commit (${stack})`, () => {
    let h: WebhookHarness;
    let rx: Awaited<ReturnType<typeof startReceiver>>;
    let admin: string; // tokens: the server's URL changes with a restart
    let stranger: string;
    let outsider: string; // a user of another domain
    const streams: SseCollector[] = [];
    const secrets = new Map<string, string>();
    // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected loosely
    const call = (token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> =>
      request(h.srv.url, method, path, { token, ...(body === undefined ? {} : { body }) });
    const create = async (token: string, type: string, name?: string, state: unknown = {}) => {
      const res = await call(token, 'POST', '/v1/scopes', { type, state, ...(name ? { name } : {}) });
      expect(res.status).toBe(201);
      return res.json.id as string;
    };
    const patch = async (id: string, path: string, value: unknown, token = admin) => {
      const res = await call(token, 'POST', `/v1/scopes/${id}/patches`, { patch: [{ op: 'add', path, value }] });
      expect(res.status).toBe(200);
      return res.json.ii as number;
    };
    /** Deliveries of one scope's patches to one webhook path, in arrival order. */
    const of = (path: string, scope: string) => rx.got.filter((d) => d.path === path && d.json.data.scope === scope);
    const verified = (d: Delivery, hook: string) => new Webhook(secrets.get(hook) as string).verify(d.body, d.headers);

    beforeAll(async () => {
      rx = await startReceiver();
      h = await start({ webhookMaxAttempts: MAX_ATTEMPTS, domainCacheMs: 0 });
      const [a, s] = await Promise.all([clientIn(h.srv.url, DOMAIN), clientIn(h.srv.url, DOMAIN)]);
      outsider = (await clientIn(h.srv.url, 'elsewhere.example.com')).token;
      admin = a.token;
      stranger = s.token;
      await h.srv.app.domains.addAdmin(DOMAIN, userId(a));
      const config = `webhooks:
  - name: notes
    url: ${rx.url}/notes
    types: [note]
  - name: tasks
    url: ${rx.url}/tasks
    types: [task]
    names: ["dl-*"]
`;
      const res = await upload(a, config, 0, DOMAIN);
      expect(res.status).toBe(202);
      streams.push(await waitDone(h.srv, a, res.json.report));
    }, 60_000);
    afterAll(async () => {
      for (const s of streams) s.close();
      await h?.close();
      rx?.close();
    });

    it("shows the domain's admin its webhooks with their secrets; anyone else gets 403 and nothing changes", async () => {
      const res = await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks`);
      expect(res.status).toBe(200);
      expect(res.json.webhooks.map((w: { name: string }) => w.name)).toEqual(['notes', 'tasks']);
      for (const w of res.json.webhooks) {
        expect(w.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
        expect(w.state).toMatchObject({ delivered: 0, deadLetters: 0, lastError: null });
        secrets.set(w.name, w.secret);
      }
      expect(res.json.webhooks[0]).toMatchObject({ url: `${rx.url}/notes`, types: ['note'], names: null, failing: [] });
      const before = res.text;
      expect((await call(stranger, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).json.error.code).toBe('forbidden');
      expect((await call(outsider, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).status).toBe(403);
      expect((await call(stranger, 'GET', `/v1/domains/${DOMAIN}/webhooks/notes/dead`)).status).toBe(403);
      expect((await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks/Not_A_Name/dead`)).json.error.code).toBe('invalid_request');
      expect((await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks/notes/dead?limit=0`)).status).toBe(400);
      expect((await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks/notes/dead?after=nope`)).status).toBe(400);
      expect((await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).text).toBe(before);
    });

    it('POSTs the matching patches in order, signed per Standard Webhooks (verified by the library), and nothing else', async () => {
      const note = await create(admin, 'note', 'first');
      const other = await create(admin, 'memo'); // no webhook wants memos
      for (let i = 1; i <= 5; i++) await patch(note, `/k${i}`, i);
      await patch(other, '/x', 1);
      await waitFor(() => of('/notes', note).length >= 5, 'five deliveries');
      const got = of('/notes', note);
      expect(got.map((d) => d.json.data.ii)).toEqual([1, 2, 3, 4, 5]);
      for (const d of got) {
        expect(verified(d, 'notes')).toMatchObject({ type: 'patch.committed' });
        expect(d.headers['webhook-id']).toBe(`${note}:${d.json.data.ii}`);
        expect(d.json.data).toMatchObject({ scope: note, domain: DOMAIN, scopeType: 'note', name: 'first', by: expect.stringMatching(/^anon:/) });
      }
      expect(got[2]?.json.data.patch).toEqual([{ op: 'add', path: '/k3', value: 3 }]);
      // Tampered: the library refuses it.
      const first = got[0] as Delivery;
      const tampered = first.body.replace('/k1', '/k9');
      expect(tampered).not.toBe(first.body);
      expect(() => new Webhook(secrets.get('notes') as string).verify(tampered, first.headers)).toThrow();
      expect(() => new Webhook(secrets.get('tasks') as string).verify(first.body, first.headers)).toThrow();
      expect(rx.got.some((d) => d.json.data.scope === other)).toBe(false);
      // The delivery state is written after each POST returns: wait for the fifth.
      let state = (await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).json.webhooks[0].state;
      const deadline = Date.now() + 15_000;
      while (state.lastDelivered?.ii !== 5 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        state = (await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).json.webhooks[0].state;
      }
      expect(state.delivered).toBeGreaterThanOrEqual(5);
      expect(state.lastDelivered).toMatchObject({ scope: note, ii: 5 });
      expect(state.lastDelivered.lagMs).toBeGreaterThanOrEqual(0);
    });

    it('sends a failed patch again with the same webhook-id before any later one, and ignores a redelivered event', async () => {
      const note = await create(admin, 'note');
      let failures = 0;
      rx.respond = (d) => {
        if (d.json.data.scope === note && d.json.data.ii === 1 && failures < 2) {
          failures += 1;
          return { status: 500 };
        }
        return { status: 204 };
      };
      await patch(note, '/a', 1);
      await patch(note, '/b', 2);
      await waitFor(() => of('/notes', note).filter((d) => d.status === 204).length >= 2, 'both patches delivered', 40_000);
      const got = of('/notes', note);
      expect(got.map((d) => [d.json.data.ii, d.status])).toEqual([
        [1, 500],
        [1, 500],
        [1, 204],
        [2, 204],
      ]);
      const ids = new Set(got.slice(0, 3).map((d) => d.headers['webhook-id']));
      expect([...ids]).toEqual([`${note}:1`]);
      for (const d of got) verified(d, 'notes');
      // The failures were visible to the admin; nothing is failing once it went through.
      const w = (await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).json.webhooks[0];
      expect(w.state.lastError).toMatchObject({ scope: note, ii: 1, status: 500 });
      expect(w.failing).toEqual([]);
      // A redelivered event (at or below the cursor) is a duplicate: nothing is sent again.
      const consumer = h.srv.app.consumers.find((c) => c.name === 'webhooks');
      const event = { scope: note, ii: 1, patch: [{ op: 'add' as const, path: '/a', value: 1 }], at: Date.now(), by: 'x' };
      expect(await consumer?.deliver(event)).toMatchObject({ duplicate: true, handled: [] });
      await new Promise((r) => setTimeout(r, 200));
      expect(of('/notes', note)).toHaveLength(4);
      rx.respond = () => ({ status: 204 });
    }, 60_000);

    it(`dead-letters a patch after ${MAX_ATTEMPTS} failures and goes on with the next`, async () => {
      const task = await create(admin, 'task', 'dl-1');
      const unnamed = await create(admin, 'task', 'other'); // its name matches no glob
      rx.respond = (d) => (d.path === '/tasks' && d.json.data.ii === 1 ? { status: 503 } : { status: 204 });
      await patch(task, '/a', 1);
      await patch(task, '/b', 2);
      await patch(unnamed, '/c', 3);
      await waitFor(() => of('/tasks', task).some((d) => d.json.data.ii === 2), 'the patch after the dead one', 60_000);
      expect(of('/tasks', task).map((d) => [d.json.data.ii, d.status])).toEqual([
        [1, 503],
        [1, 503],
        [1, 503],
        [2, 204],
      ]);
      expect(rx.got.some((d) => d.json.data.scope === unnamed)).toBe(false);
      const dead = await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks/tasks/dead`);
      expect(dead.status).toBe(200);
      expect(dead.json.letters).toEqual([
        expect.objectContaining({ scope: task, ii: 1, id: `${task}:1`, attempts: MAX_ATTEMPTS, lastError: expect.objectContaining({ status: 503 }) }),
      ]);
      expect(dead.json.next).toBeNull();
      const w = (await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).json.webhooks[1];
      expect(w.state).toMatchObject({ deadLetters: 1, lastDelivered: { scope: task, ii: 2 } });
      expect((await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks/notes/dead`)).json.letters).toEqual([]);
      rx.respond = () => ({ status: 204 });
    }, 90_000);

    it("applies a response's write-back as domain:<domain>, to that domain's scopes only", async () => {
      const source = await create(admin, 'note');
      const target = await create(admin, 'memo', undefined, { n: 0 });
      const foreign = await create(outsider, 'memo', undefined, { n: 0 });
      const foreignBefore = (await call(outsider, 'GET', `/v1/scopes/${foreign}`)).json;
      rx.respond = (d) => {
        if (d.json.data.scope !== source) return { status: 204 };
        const to = d.json.data.ii === 1 ? target : foreign;
        return { status: 200, body: { patches: [{ scope: to, patch: [{ op: 'replace', path: '/n', value: d.json.data.ii }] }] } };
      };
      await patch(source, '/ping', 1);
      await waitFor(() => of('/notes', source).length >= 1, 'the ping');
      const log = async () =>
        (await call(admin, 'GET', `/v1/scopes/${target}/patches`)).text
          .trim()
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l));
      expect(await until(log, (l) => l.length > 0)).toEqual([
        expect.objectContaining({ ii: 1, by: `domain:${DOMAIN}`, patch: [{ op: 'replace', path: '/n', value: 1 }] }),
      ]);
      expect((await call(admin, 'GET', `/v1/scopes/${target}`)).json.state).toEqual({ n: 1 });
      // Asked for another domain's scope: refused, recorded, and that scope is unchanged.
      await patch(source, '/ping2', 2);
      const lastWriteBack = async () => (await call(admin, 'GET', `/v1/domains/${DOMAIN}/webhooks`)).json.webhooks[0].state.lastWriteBack;
      expect(await until(lastWriteBack, (wb) => wb?.ii === 2)).toMatchObject({
        scope: source,
        ii: 2,
        applied: 0,
        error: expect.stringContaining(`no scope ${foreign} in domain ${DOMAIN}`),
      });
      expect((await call(outsider, 'GET', `/v1/scopes/${foreign}`)).json).toEqual(foreignBefore);
      expect(await log()).toHaveLength(1);
      rx.respond = () => ({ status: 204 });
    }, 60_000);

    it('delivers what it missed after a restart, in order', async () => {
      const note = await create(admin, 'note');
      rx.respond = (d) => (d.json.data.scope === note ? { status: 503 } : { status: 204 });
      await patch(note, '/a', 1);
      await patch(note, '/b', 2);
      await waitFor(() => of('/notes', note).length >= 1, 'a failed attempt');
      // The receiver recovers while no server runs: only the new one can deliver to it.
      await h.restart(() => {
        rx.respond = () => ({ status: 204 });
      });
      await waitFor(() => of('/notes', note).filter((d) => d.status === 204).length >= 2, 'delivery after the restart', 60_000);
      const ok = of('/notes', note).filter((d) => d.status === 204);
      expect(ok.map((d) => d.json.data.ii)).toEqual([1, 2]);
      // In order across the restart: no 2 before 1's success.
      const seq = of('/notes', note).map((d) => d.json.data.ii);
      expect(seq.indexOf(2)).toBeGreaterThan(seq.lastIndexOf(1));
      for (const d of ok) verified(d, 'notes');
    }, 90_000);
  });
}
