/**
 * Uploading a domain's configuration and applying it (issue 13, part 2): asynchronous,
 * idempotent and resumable, with its progress written step by step into a report scope that the
 * domain's admins watch live (GET /v1/scopes/{report}/events).
 *
 * How it runs, on both stacks alike: an upload stores the version (config-versions.ts), creates
 * the version's report scope (owned by the system user, readable by the domain's admins at upload
 * time) and commits one patch to it, `/requested`. That patch is the trigger: the `config-apply`
 * consumer (shared/engine/consumer.ts) receives it through the ordered fan-out (on Google a
 * Pub/Sub push subscription filtered on report scopes calls the `push` function; embedded, the
 * in-process delivery of shared/engine/local-delivery.ts) and runs the apply. A crash or a failed
 * step leaves the consumer's cursor where it was, so the trigger is delivered again and the apply
 * resumes: steps already done (a checkpoint record per version) are skipped, and every report
 * patch carries a (session, si) of its own, so one written before the crash is recognised as a
 * duplicate instead of applied twice. A configuration that is invalid fails the same way every
 * time: the report says so (`status: failed`, the error with its line) and the trigger is
 * acknowledged.
 *
 * Steps: `compile` (parse and compile the version again: it was checked at upload), `origins`
 * (the domain record's allowed origins, when the configuration's `access.origins` names them),
 * `webhooks` (a signing secret for each webhook that has none, webhook-records.ts: made before
 * the version is active, so its webhooks receive the patches committed from then on),
 * `mirror` (the domain's mirror tables made to match the version's: shared/domains/mirror-step.ts),
 * `activate` (the version becomes the active one, unless a later one already is), `backfill`
 * (after every instance holds the version, the tables that need it are filled from the current
 * states, progress in the report's `/mirror`, its position checkpointed page by page). Every instance
 * enforces the active version within PATCHBAY_DOMAIN_CACHE_MS (stored-configs.ts).
 *
 * Report scope ids start with `sys:`, a prefix no client may create (shared/http/routes/scopes.ts),
 * so nobody can take a report's id before its upload.
 */
import { createHash } from 'node:crypto';
import type { DomainsConfig } from '../config.js';
import type { Engine } from '../engine/engine.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { RecordStore } from '../ports/records.js';
import type { PatchEvent, PatchRequest, Visibility } from '../protocol.js';
import { type ActiveConfigs, loadDomainConfig } from './active.js';
import type { DomainConfig } from './config-schema.js';
import type { ConfigHead, ConfigVersion, ConfigVersions } from './config-versions.js';
import type { Domains } from './domains.js';
import { backfillStep, ensureStep, type MirrorCheckpoint, type MirrorStepDeps } from './mirror-step.js';
import type { CompiledConfig } from './validation.js';
import { WebhookRecords } from './webhook-records.js';

/** The user the platform acts as: owner of report scopes. No token is ever issued for it. */
export const SYSTEM_USER = 'system:patchbay';
/** Scope ids under this prefix are the platform's; clients cannot create them. */
export const SYSTEM_SCOPE_PREFIX = 'sys:';
const REPORT_PREFIX = 'sys:config:';
export const REPORT_TYPE = 'patchbay/config-report';
export const APPLY_CONSUMER = 'config-apply';
const CHECKPOINT_KIND = 'config-apply';
/** The session of every report patch: its `si` says which write of which step it is. */
const REPORT_SESSION = 'config-apply';

export const STEPS = ['compile', 'origins', 'webhooks', 'mirror', 'activate', 'backfill'] as const;
type Step = (typeof STEPS)[number];

/** The report scope of a version: readable from the id when the domain is short, hashed when not (ids are at most 128 characters). */
export function reportId(domain: string, version: number): string {
  const plain = `${REPORT_PREFIX}${domain}:${version}`;
  if (plain.length <= 128) return plain;
  return `${REPORT_PREFIX}h${createHash('sha256').update(domain).digest('hex').slice(0, 40)}:${version}`;
}

/** The Pub/Sub subscription filter of the `config-apply` push subscription: report scopes only (infra/ deploys it). */
export const APPLY_FILTER = `hasPrefix(attributes.scope, "${REPORT_PREFIX}")`;

/** Whether a scope id is a configuration report (what the `config-apply` consumer accepts). */
export const isReport = (scope: string): boolean => scope.startsWith(REPORT_PREFIX);

interface Checkpoint {
  done: Step[];
  failed: boolean;
  /** Where the `mirror` step stands (its backfill's position), while it runs. */
  mirror?: MirrorCheckpoint;
}

interface Requested {
  domain: string;
  version: number;
}

export class ConfigService {
  private readonly webhooks: WebhookRecords;

  constructor(
    private readonly versions: ConfigVersions,
    private readonly domains: Domains,
    private readonly records: RecordStore,
    private readonly engine: Engine,
    private readonly config: Pick<DomainsConfig, 'maxConfigBytes'>,
    /** Told when this instance activated a version (so its own cache need not wait out its bound). */
    private readonly onActivated: (domain: string) => void = () => {},
    /** Configurations are given in-process or as files (PATCHBAY_DOMAIN_CONFIG_DIR): uploads are refused. */
    private readonly fixed = false,
    /** The active configurations (for the domain's defaults). */
    private readonly active?: ActiveConfigs,
    /** The mirror and what its step reads (none: the `mirror` step does nothing). */
    private readonly mirror?: MirrorStepDeps,
  ) {
    this.webhooks = new WebhookRecords(records);
  }

  /** The visibility the domain's active configuration gives new scopes that name none (`access.visibility`), if any. */
  async defaultVisibility(domain: string): Promise<Visibility | undefined> {
    if (!this.active) return undefined;
    await this.active.prepare?.(domain);
    return this.active.get(domain)?.config.access?.visibility;
  }

  /**
   * Stores a new version replacing `replaces` (see ConfigVersions.upload for the refusals) and
   * starts its apply; returns its number and report scope. The caller checked that `by` is an admin.
   */
  async upload(domain: string, text: string, by: string, replaces: number): Promise<{ version: number; report: string }> {
    if (this.fixed)
      throw new PatchbayError('forbidden', 'this deployment reads domain configurations from files (PATCHBAY_DOMAIN_CONFIG_DIR); uploads are off');
    // A version a crash left without its trigger gets it now, before its number is compared.
    const { latest } = await this.versions.head(domain);
    if (latest > 0) await this.trigger(domain, latest);
    loadDomainConfig(text, this.config); // refuse an invalid text before creating anything
    const version = (await this.versions.head(domain)).latest + 1;
    if (replaces + 1 === version) await this.createReport(domain, version, replaces); // its report first: see trigger()
    const stored = await this.versions.upload(domain, text, by, replaces);
    await this.trigger(domain, stored.version);
    return { version: stored.version, report: reportId(domain, stored.version) };
  }

  /**
   * Makes sure the version's apply was requested: its report exists and holds `/requested` (each
   * write idempotent). Called after an upload, and again for the latest version by the next
   * upload and by reads of the configuration, so a crash between storing a version and
   * requesting its apply is repaired.
   */
  async trigger(domain: string, version: number): Promise<void> {
    const v = await this.versions.get(domain, version);
    if (!v) return;
    await this.createReport(domain, version, v.replaces);
    const requested: Requested = { domain, version };
    await this.report(domain, version, 0, [{ op: 'add', path: '/requested', value: requested as unknown as Json }]);
  }

  /** The domain's latest and active versions; repairs a latest version whose apply was never requested (see trigger()). */
  async head(domain: string): Promise<ConfigHead> {
    const head = await this.versions.head(domain);
    if (head.latest > head.active) await this.trigger(domain, head.latest);
    return head;
  }

  /** One version, or null. */
  version(domain: string, version: number): Promise<ConfigVersion | null> {
    return this.versions.get(domain, version);
  }

  /** The `config-apply` consumer's handler: runs the apply a report's `/requested` asks for. */
  async handle(event: PatchEvent): Promise<void> {
    if (event.ii !== 1) return; // the apply's own progress patches
    const op = event.patch[0];
    if (op?.op !== 'add' || op.path !== '/requested') return;
    const { domain, version } = op.value as unknown as Requested;
    await this.apply(domain, version);
  }

  /** Runs (or resumes) the apply of a version; idempotent. */
  async apply(domain: string, version: number): Promise<void> {
    const key = `${domain}/${String(version).padStart(8, '0')}`;
    let cp = await this.records.get(CHECKPOINT_KIND, key);
    let state: Checkpoint = cp ? (cp.value as unknown as Checkpoint) : { done: [], failed: false };
    if (state.failed || state.done.length === STEPS.length) return;
    const v = await this.versions.get(domain, version);
    if (!v) throw new PatchbayError('internal', `configuration version ${version} of ${domain} is missing`);
    let si = 1;
    await this.report(domain, version, si++, [{ op: 'replace', path: '/status', value: 'applying' }]);
    let compiled: CompiledConfig | null = null;
    for (const [i, step] of STEPS.entries()) {
      const base = 10 * (i + 1);
      if (state.done.includes(step) && step !== 'compile') continue;
      await this.report(domain, version, base, [{ op: 'replace', path: `/steps/${step}`, value: 'running' }]);
      try {
        if (step === 'mirror' || step === 'backfill') {
          compiled ??= loadDomainConfig(v.text, this.config);
          await this.mirrorStep(step, domain, version, compiled.config, state.mirror, async (m) => {
            state = { ...state, mirror: m };
            cp = await this.checkpoint(key, cp?.rev ?? 0, state);
          });
        } else compiled = await this.run(step, domain, version, v.text, compiled);
      } catch (err) {
        if (!(err instanceof PatchbayError) || err.code !== 'invalid_config') throw err; // transient: delivered again
        await this.report(domain, version, base + 1, [
          { op: 'replace', path: `/steps/${step}`, value: 'failed' },
          { op: 'replace', path: '/status', value: 'failed' },
          { op: 'replace', path: '/error', value: { message: err.message, ...(err.details as Record<string, Json>) } },
        ]);
        await this.checkpoint(key, cp?.rev ?? 0, { ...state, failed: true });
        return;
      }
      if (!state.done.includes(step)) {
        state = { ...state, done: [...state.done, step] };
        cp = await this.checkpoint(key, cp?.rev ?? 0, state);
      }
      await this.report(domain, version, base + 1, [{ op: 'replace', path: `/steps/${step}`, value: 'done' }]);
    }
    await this.report(domain, version, 100, [
      { op: 'replace', path: '/status', value: 'done' },
      { op: 'replace', path: '/end', value: Date.now() },
    ]);
  }

  private async run(step: Step, domain: string, version: number, text: string, compiled: CompiledConfig | null): Promise<CompiledConfig> {
    const c = compiled ?? loadDomainConfig(text, this.config);
    if (step === 'origins') {
      const origins = c.config.access?.origins;
      if (origins) await this.domains.update(domain, () => ({ origins }));
    } else if (step === 'webhooks') {
      for (const h of c.config.webhooks ?? []) await this.webhooks.ensureSecret(domain, h.name);
    } else if (step === 'activate') {
      await this.versions.activate(domain, version);
      this.onActivated(domain);
    }
    return c;
  }

  private async mirrorStep(
    step: 'mirror' | 'backfill',
    domain: string,
    version: number,
    config: DomainConfig,
    saved: MirrorCheckpoint | undefined,
    save: (m: MirrorCheckpoint) => Promise<void>,
  ): Promise<void> {
    if (!this.mirror) return;
    const report = (si: number, value: Json) => this.report(domain, version, si, [{ op: 'add', path: '/mirror', value }]);
    if (step === 'backfill') return backfillStep(this.mirror, domain, config, saved, save, report);
    await this.active?.prepare?.(domain);
    await ensureStep(this.mirror, domain, config, this.active?.get(domain)?.config, saved, save, report);
  }

  private async checkpoint(key: string, rev: number, state: Checkpoint) {
    const stored = await this.records.put(CHECKPOINT_KIND, key, state as unknown as Json, rev);
    // Two applies of one version at once (a redelivery overlapping a slow run): the other one recorded it.
    if (!stored) throw new PatchbayError('unavailable', `the apply of ${key} moved concurrently; it will be delivered again`);
    return stored;
  }

  private async createReport(domain: string, version: number, replaces: number): Promise<void> {
    const admins = (await this.domains.get(domain))?.admins ?? [];
    const state = {
      domain,
      version,
      replaces,
      status: 'queued',
      steps: Object.fromEntries(STEPS.map((s) => [s, 'pending'])),
      end: null,
      error: null,
    };
    try {
      await this.engine.createScope(
        SYSTEM_USER,
        { id: reportId(domain, version), type: REPORT_TYPE, state, access: { visibility: 'private', readers: admins, writers: [] } },
        { domain },
      );
    } catch (err) {
      if (!(err instanceof PatchbayError && err.code === 'scope_exists')) throw err;
    }
  }

  /** One report patch, exactly once: its (session, si) makes a repeat a duplicate. */
  private async report(domain: string, version: number, si: number, patch: PatchRequest['patch']): Promise<void> {
    try {
      await this.engine.submit(reportId(domain, version), SYSTEM_USER, { patch, session: REPORT_SESSION, si }, { domain });
    } catch (err) {
      // Written before a crash with other values (a time, an error's text): the report has it already.
      if (!(err instanceof PatchbayError && err.code === 'duplicate_mismatch')) throw err;
    }
  }
}
