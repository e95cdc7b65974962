/**
 * Kind `api`: a Google API the deployment uses, enabled on the project. Never disabled by
 * `--prune`: other things in the project may use the same API.
 */
import type { Kind } from '../model.js';

interface Service {
  config?: { name?: string };
  name?: string;
}

export const apis: Kind<Record<string, never>> = {
  kind: 'api',
  async observe({ gcloud }) {
    const list = await gcloud.json<Service[]>(['services', 'list', '--enabled']);
    return new Map(list.map((s) => [s.config?.name ?? (s.name ?? '').split('/').pop() ?? '', {}]));
  },
  create: (_ctx, r) => [{ args: ['services', 'enable', r.name] }],
};
