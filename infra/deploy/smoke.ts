/**
 * The smoke test a deploy ends with: `GET /healthz` on the deployed `api`, then one patch round
 * trip (sign in, create a scope, patch it, read it back at the acknowledged index, delete it).
 * Its result is printed; a failure fails the deploy (exit 1) after the infrastructure is in place,
 * so a re-run retries only the checks. The round trip uses the service token the deploy minted
 * for itself (bootstrap.ts), or, when none could be minted, an anonymous token (skipped, and
 * saying so, with PATCHBAY_ANONYMOUS_AUTH=false). A run that fails midway may leave its scope
 * `patchbay-smoke-<time>` behind.
 */

export interface SmokeResult {
  ok: boolean;
  lines: string[];
}

async function call(base: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: unknown }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** Runs the checks against `base` (the api function's URL); `attempts` covers a cold start. */
export async function smokeTest(
  base: string,
  opts: { attempts?: number; delayMs?: number; token?: { token: string; domain: string } } = {},
): Promise<SmokeResult> {
  const lines: string[] = [];
  const started = Date.now();
  let health: { status: number; json: unknown } | undefined;
  let lastError = '';
  for (let i = 0; i < (opts.attempts ?? 5); i++) {
    try {
      health = await call(base, 'GET', '/healthz');
      if (health.status === 200) break;
      lastError = `status ${health.status}`;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, opts.delayMs ?? 3000));
  }
  if (health?.status !== 200) return { ok: false, lines: [`smoke: GET ${base}/healthz failed: ${lastError}`] };
  lines.push(`smoke: GET /healthz ok`);
  let token = opts.token?.token;
  const as = opts.token ? `a service token of domain ${opts.token.domain}` : 'an anonymous user';
  if (token === undefined) {
    const auth = await call(base, 'POST', '/v1/auth/anonymous');
    if (auth.status !== 200) {
      lines.push(`smoke: patch round trip skipped: no service token, and anonymous sign-in answered ${auth.status}`);
      return { ok: true, lines };
    }
    token = (auth.json as { token: string }).token;
  }
  const id = `patchbay-smoke-${Date.now()}`;
  const steps: Array<[string, () => Promise<boolean>]> = [
    ['create', async () => (await call(base, 'POST', '/v1/scopes', { id, state: {} }, token)).status === 201],
    [
      'patch',
      async () => {
        const r = await call(base, 'POST', `/v1/scopes/${id}/patches`, { patch: [{ op: 'add', path: '/ok', value: true }], ii: 1 }, token);
        return r.status === 200 && (r.json as { ii?: number }).ii === 1;
      },
    ],
    [
      'read',
      async () => {
        const r = await call(base, 'GET', `/v1/scopes/${id}`, undefined, token);
        const j = r.json as { ii?: number; state?: { ok?: boolean } };
        return r.status === 200 && j.ii === 1 && j.state?.ok === true;
      },
    ],
    ['delete', async () => (await call(base, 'DELETE', `/v1/scopes/${id}`, undefined, token)).status === 204],
  ];
  for (const [name, step] of steps) {
    if (!(await step())) return { ok: false, lines: [...lines, `smoke: patch round trip failed at ${name} (scope ${id})`] };
  }
  lines.push(`smoke: patch round trip ok as ${as} (scope ${id}, ii 1, deleted) in ${Date.now() - started} ms`);
  return { ok: true, lines };
}
