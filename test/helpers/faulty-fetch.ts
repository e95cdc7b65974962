/** A `fetch` that loses writes as told and cuts streams, for the client's property tests. */

export type Fault = 'none' | 'lose-request' | 'lose-answer';

/**
 * A fetch that fails POSTs (but scope creation) as the next fault in `faults` says, `lose-request`
 * before the server sees it, `lose-answer` after the server answered, and cuts each stream after
 * `cutAfterMs()`.
 */
export function faulty(faults: Fault[], cutAfterMs: () => number): typeof fetch {
  return async (input, init) => {
    const url = String(input);
    if (/\/events(\?|$)/.test(url)) {
      const cut = AbortSignal.timeout(cutAfterMs());
      return fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, cut]) : cut });
    }
    if (init?.method !== 'POST' || url.endsWith('/v1/scopes') || url.endsWith('/v1/auth/anonymous')) return fetch(input, init);
    const fault = faults.shift() ?? 'none';
    if (fault === 'lose-request') throw new TypeError('fetch failed');
    const res = await fetch(input, init);
    if (fault === 'lose-answer') {
      await res.body?.cancel();
      throw new TypeError('fetch failed');
    }
    return res;
  };
}
