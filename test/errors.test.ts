/**
 * Errors are data: every failure reaches the client as a coded error in the envelope. A backend
 * failure is `503 unavailable` (retry), never a `500 internal` (a bug), and neither leaks the
 * underlying error's text.
 */
import { describe, expect, it } from 'vitest';
import { asPatchbayError, ERROR_CODES, PatchbayError } from '../shared/errors.js';
import type { Adapters } from '../shared/ports/index.js';
import { startServer } from './helpers/server.js';
import { wrap } from './helpers/wrap.js';

const withCode = (code: unknown, message = 'boom') => Object.assign(new Error(message), { code });

describe('asPatchbayError', () => {
  it('maps backend failures to unavailable and everything else to internal, hiding their text', () => {
    const backend = [
      withCode(14, '14 UNAVAILABLE: secret host'),
      withCode('ECONNREFUSED'),
      withCode('SQLITE_BUSY'),
      new TypeError('fetch failed'),
      Object.assign(new Error('x'), { name: 'UpstashError' }),
      new Error('wrapped', { cause: withCode('ETIMEDOUT') }),
    ];
    for (const err of backend) {
      const e = asPatchbayError(err);
      expect(e.code).toBe('unavailable');
      expect(e.status).toBe(503);
      expect(e.message).not.toContain('secret');
    }
    for (const err of [new Error('bug'), new TypeError('undefined is not a function'), withCode('SQLITE_CONSTRAINT'), 'a string']) {
      expect(asPatchbayError(err).code).toBe('internal');
    }
    const own = new PatchbayError('out_of_sync', 'behind', { head: 3 });
    expect(asPatchbayError(own)).toBe(own);
    expect(Object.values(ERROR_CODES).every((s) => s >= 400 && s < 600)).toBe(true);
  });

  it('answers 503 in the envelope when the ledger is down', async () => {
    const srv = await startServer({}, undefined, {
      wrap: (a: Adapters) => ({
        ...a,
        ledger: wrap(a.ledger, { getHead: () => Promise.reject(withCode('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.1:443')) }),
      }),
    });
    try {
      const alice = await srv.client();
      const res = await alice.request('GET', '/v1/scopes/any');
      expect(res.status).toBe(503);
      expect(res.json.error).toEqual({ code: 'unavailable', message: 'a backend is unavailable; retry' });
    } finally {
      await srv.close();
    }
  });
});
