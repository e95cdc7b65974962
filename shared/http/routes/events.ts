/**
 * Route group `events`: a scope's SSE stream (`GET /v1/scopes/{id}/events`: the state or the
 * patches after a position, then live patches, heartbeats, a clean end before the platform's
 * request timeout with a `retry:` hint) and the stream tickets that let a browser's EventSource,
 * which cannot send headers, open it (`POST /v1/scopes/{id}/events/ticket`). Both for the scope's
 * readers only (404 for anyone else); a public scope's stream needs no token (nor a ticket). A
 * stream whose reader loses access ends (shared/engine/stream.ts).
 */
import type { Caller } from '../../engine/access.js';
import { PatchbayError } from '../../errors.js';
import { type Ctx, intParam, parseIndex, readableHead, reader, scopeId, user } from '../context.js';
import { PresenceFeed } from '../presence-feed.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { patchFrame, SseWriter, streamEnd } from '../sse.js';

/** Thrown into a stream's catch-up when its client has gone, to stop it. */
class ClientGone extends Error {}

async function stream(ctx: Ctx): Promise<void> {
  const { auth, config } = ctx.deps;
  const id = scopeId(ctx);
  const lastEventId = ctx.req.headers['last-event-id'];
  const reconnect = typeof lastEventId === 'string' && lastEventId !== '';
  const ticket = ctx.url.searchParams.get('ticket');
  // A browser's EventSource reconnects with the URL it opened, so a reconnect (Last-Event-ID set)
  // may bring a ticket that expired during the stream it resumes: accept it for one stream's length.
  const u = ticket !== null ? await auth.fromTicket(ticket, id, reconnect ? Math.ceil(config.sseMaxMs / 1000) : 0) : await reader(ctx);
  const since = reconnect ? parseIndex(lastEventId, 'Last-Event-ID') : intParam(ctx.url, 'since');
  if (u === null) await readableHead(ctx, id, null); // 401, not 404, for a scope that is not public
  const session = ctx.url.searchParams.get('session');
  if (session !== null) {
    if (u === null) throw new PatchbayError('unauthorized', "a stream that keeps a session alive needs the session owner's token");
    await ctx.deps.sessions.requireOpen(session, u.id);
  }
  // A slot of the per-user and per-instance stream caps, held until the stream ends; a caller
  // without a token (a public scope) counts by its address.
  const release = await ctx.deps.limits.openStream(u?.id ?? `addr:${ctx.deps.limits.clientAddress(ctx.req)}`);
  try {
    await serveStream(ctx, id, since, u, session, presenceParam(ctx));
  } finally {
    release();
  }
}

/** `?presence=1` (or `true`): the stream sends presence events; absent or `0`/`false`: it does not. */
function presenceParam(ctx: Ctx): boolean {
  const v = ctx.url.searchParams.get('presence');
  if (v === null || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true') return true;
  throw new PatchbayError('invalid_request', 'presence must be 1 or 0', { issues: [{ path: ['presence'], message: 'must be 1, 0, true or false' }] });
}

async function serveStream(
  ctx: Ctx,
  id: string,
  since: number | undefined,
  caller: Caller | null,
  session: string | null,
  withPresence: boolean,
): Promise<void> {
  const { engine, config, sessions } = ctx.deps;

  const sse = new SseWriter(ctx.res);
  if (ctx.req.method === 'HEAD') {
    await readableHead(ctx, id, caller); // a missing or unreadable scope is 404, as for GET
    sse.start(config.sseRetryMs);
    ctx.res.end();
    return;
  }
  // Listen for the client leaving before anything is sent (streamEnd says why).
  const { finished, finish, gone, goneAlready } = streamEnd(ctx.res);
  if (goneAlready) return;
  const send = async (type: string, data: string, ii: number) => {
    if (gone()) throw new ClientGone();
    sse.start(config.sseRetryMs);
    await sse.event(type, data, ii);
  };
  const feed = withPresence
    ? new PresenceFeed(
        sessions.presence,
        id,
        (e) => sse.event('presence', JSON.stringify(e)),
        gone,
        (e) => ctx.deps.logger.error(e),
      )
    : undefined;
  let stop: () => Promise<void>;
  try {
    stop = await engine.openStream(
      id,
      since,
      {
        state: (ii, state) => send('state', JSON.stringify({ ii, state }), ii),
        // Live patches are written within the bus's dispatch: one frame per event for every
        // stream (patchFrame), and a promise only when this socket's buffer is full.
        patch: (e) => {
          if (gone()) throw new ClientGone();
          sse.start(config.sseRetryMs);
          return sse.frame(patchFrame(e));
        },
        failed: () => finish(), // end with a retry hint: the client resumes from its last id
        revoked: () => finish(), // its reconnect is refused (404), which ends an EventSource
        ...(feed ? { presence: () => feed.changed() } : {}),
      },
      { reader: caller },
    );
  } catch (err) {
    if (err instanceof ClientGone) return;
    throw err;
  }
  sse.start(config.sseRetryMs);
  feed?.start();
  const keepAlive =
    session !== null && caller !== null
      ? setInterval(
          () =>
            void sessions.heartbeat(session, caller.id).catch((err: unknown) => {
              if (!(err instanceof PatchbayError)) ctx.deps.logger.error({ message: 'session keep-alive failed', err: String(err) });
            }),
          Math.max(250, Math.floor(sessions.timeoutMs / 3)),
        )
      : undefined;
  await sse.hold(finished, config.sseHeartbeatMs, config.sseMaxMs);
  clearInterval(keepAlive);
  await stop();
  await feed?.stop();
  sse.end(config.sseRetryMs);
}

export const eventRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/scopes/{id}/events/ticket',
    name: 'events.ticket',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      await readableHead(ctx, id, u);
      sendJson(ctx.res, 200, await ctx.deps.auth.issueTicket(u, id));
    },
  },
  {
    method: 'GET',
    path: '/v1/scopes/{id}/events',
    name: 'events.stream',
    run: stream,
  },
];
