/**
 * A simulated gcloud for the deploy tests: exactly the commands the deployer uses, with gcloud's
 * exit codes (0; 1 for NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED; 2 for a usage error) and the
 * JSON shapes gcloud prints with `--format=json`. No cloud: resources live in
 * `$FAKE_GCLOUD_STATE/state.json`.
 *
 * - Every call's flags are checked against the real `gcloud <command> --help` text
 *   (test/fixtures/gcloud-help/, help.mjs): an unknown or misspelled flag, or a value on a switch,
 *   is refused with exit 2 as gcloud refuses it; a command without a fixture is an invalid choice.
 * - Every mutating call (anything but describe, list, get-iam-policy, versions access) is appended
 *   to `$FAKE_GCLOUD_STATE/calls.jsonl` (its argv; never stdin) once it succeeded.
 * - `FAKE_GCLOUD_FAIL_AT=n`: the n-th mutating call counted in `$FAKE_GCLOUD_STATE/attempts`
 *   fails (exit 1, nothing changes). Delete that file to restart the count.
 * - `FAKE_GCLOUD_API_URL`: the URL `functions describe api` reports (a local test server).
 * - Like the real services, it refuses what would fail for real: a deploy whose runtime account
 *   cannot read its secrets, a subscription on a missing topic, a binding on a missing resource,
 *   a bucket notification to a topic Cloud Storage's agent may not publish to.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkFlags } from './help.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/gcloud-help');
const COMMANDS = JSON.parse(readFileSync(join(FIXTURES, 'index.json'), 'utf8')).commands;
const READS = /( describe| list| get-iam-policy| versions access)$/;

class Exit extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const emptyState = () => ({
  projectNumber: '123456789012',
  services: {},
  accounts: {},
  policies: {},
  databases: {},
  indexes: {},
  fields: {},
  ttls: {},
  topics: {},
  subscriptions: {},
  buckets: {},
  notifications: {},
  secrets: {},
  functions: {},
  jobs: {},
  nextId: 1,
});

/** Reads the state directory's state (exported for the tests' assertions). */
export function readState(dir) {
  const p = join(dir, 'state.json');
  return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : emptyState();
}

function parseArgs(words) {
  const positionals = [];
  const flags = {};
  for (const w of words) {
    if (!w.startsWith('--')) {
      positionals.push(w);
      continue;
    }
    const eq = w.indexOf('=');
    const name = w.slice(2, eq < 0 ? undefined : eq);
    const value = eq < 0 ? true : w.slice(eq + 1);
    if (name === 'field-config') flags[name] = [...(flags[name] ?? []), value];
    else flags[name] = value;
  }
  return { positionals, flags };
}

const labelsOf = (v) =>
  Object.fromEntries(
    String(v)
      .split(',')
      .filter(Boolean)
      .map((kv) => kv.split('=')),
  );

/** Runs one gcloud call against the state directory: {code, stdout, stderr}. */
export function runFake(argv, { env = process.env, stdin = '' } = {}) {
  const dir = env.FAKE_GCLOUD_STATE;
  if (!dir) return { code: 2, stdout: '', stderr: 'fake gcloud: FAKE_GCLOUD_STATE is not set\n' };
  const words = argv.filter((a) => !a.startsWith('-'));
  let command = '';
  for (const c of COMMANDS)
    if (words.join(' ').startsWith(c) && c.length > command.length && (words.join(' ') === c || words.join(' ').startsWith(`${c} `))) command = c;
  const label = `gcloud.${(command || words.slice(0, 2).join(' ')).replaceAll(' ', '.')}`;
  if (!command)
    return {
      code: 2,
      stdout: '',
      stderr: `ERROR: (gcloud) Invalid choice: '${words.join(' ')}' (no help fixture: add it to test/fixtures/gcloud-help/index.json)\n`,
    };
  const rest = argv.slice(command.split(' ').length);
  const problem = checkFlags(readFileSync(join(FIXTURES, `${command.replaceAll(' ', '_')}.txt`), 'utf8'), rest);
  if (problem) return { code: 2, stdout: '', stderr: `ERROR: (${label}) ${problem}\n` };
  const { positionals, flags } = parseArgs(rest);
  const read = READS.test(command);
  if (read && flags.format !== 'json' && command !== 'secrets versions access')
    return { code: 2, stdout: '', stderr: 'fake gcloud: reads must ask for --format=json\n' };
  if (!read && flags.quiet !== true) return { code: 2, stdout: '', stderr: 'fake gcloud: mutating calls must pass --quiet (no prompts)\n' };
  const state = readState(dir);
  try {
    if (!read) {
      const attemptsFile = join(dir, 'attempts');
      const n = (existsSync(attemptsFile) ? Number(readFileSync(attemptsFile, 'utf8')) : 0) + 1;
      writeFileSync(attemptsFile, String(n));
      if (env.FAKE_GCLOUD_FAIL_AT && Number(env.FAKE_GCLOUD_FAIL_AT) === n) throw new Exit(1, 'UNAVAILABLE: injected failure (FAKE_GCLOUD_FAIL_AT)');
    }
    const result = handle(command, positionals, flags, state, stdin, env);
    if (!read) {
      writeFileSync(join(dir, 'state.json'), JSON.stringify(state, null, 1));
      appendFileSync(join(dir, 'calls.jsonl'), `${JSON.stringify(argv)}\n`);
    }
    const stdout = result === undefined ? '' : typeof result === 'string' ? result : `${JSON.stringify(result, null, 2)}\n`;
    return { code: 0, stdout, stderr: read ? '' : `Updated [${positionals[0] ?? command}].\n` };
  } catch (err) {
    if (err instanceof Exit) return { code: err.code, stdout: '', stderr: `ERROR: (${label}) ${err.message}\n` };
    throw err;
  }
}

const notFound = (what) => new Exit(1, `NOT_FOUND: ${what} not found`);
const exists = (what) => new Exit(1, `ALREADY_EXISTS: ${what} already exists`);

function need(map, key, what) {
  if (!(key in map)) throw notFound(`${what} [${key}]`);
  return map[key];
}

/** IAM policy commands of every group: the policy is kept by `<group>/<resource>`. */
function iam(command, target, flags, state) {
  const group = command.split(' ').slice(0, -1).join(' ');
  const key = `${group}/${target}`;
  const P = state.projectNumber;
  const existsFor = {
    projects: () => true,
    'iam service-accounts': () => target.split('@')[0] in state.accounts,
    'pubsub topics': () => target in state.topics,
    'pubsub subscriptions': () => target in state.subscriptions,
    'storage buckets': () => target.replace(/^gs:\/\//, '') in state.buckets,
    secrets: () => target in state.secrets,
    'run services': () => target in state.functions,
  };
  if (!existsFor[group]()) throw notFound(`${group} ${target}`);
  if (!state.policies[key]) state.policies[key] = { bindings: [], etag: 'BwX', version: 1 };
  const policy = state.policies[key];
  const verb = command.split(' ').at(-1);
  if (verb === 'get-iam-policy') return policy;
  const { member, role } = flags;
  if (member.startsWith('serviceAccount:service-') && !member.includes(P)) throw new Exit(1, `INVALID_ARGUMENT: unknown service agent ${member}`);
  if (member.startsWith('serviceAccount:patchbay-') && !(member.slice(15).split('@')[0] in state.accounts))
    throw new Exit(1, `INVALID_ARGUMENT: Service account ${member} does not exist.`);
  let b = policy.bindings.find((x) => x.role === role);
  if (verb === 'add-iam-policy-binding') {
    if (!b) {
      b = { role, members: [] };
      policy.bindings.push(b);
    }
    if (!b.members.includes(member)) b.members.push(member);
  } else {
    if (!b?.members.includes(member)) throw new Exit(1, 'Policy binding with the specified principal, role, and condition not found!');
    b.members = b.members.filter((m) => m !== member);
    if (b.members.length === 0) policy.bindings = policy.bindings.filter((x) => x !== b);
  }
  return policy;
}

function subscriptionJson(state, P, name, flags, old) {
  const s = old ?? { name: `projects/${P}/subscriptions/${name}`, ackDeadlineSeconds: 10, messageRetentionDuration: '604800s', state: 'ACTIVE' };
  if (flags.topic) s.topic = `projects/${P}/topics/${flags.topic}`;
  if (flags['enable-message-ordering']) s.enableMessageOrdering = true;
  if (flags['message-filter']) s.filter = flags['message-filter'];
  if (flags['push-endpoint']) {
    s.pushConfig = { pushEndpoint: flags['push-endpoint'] };
    if (flags['push-auth-service-account'])
      s.pushConfig.oidcToken = {
        serviceAccountEmail: flags['push-auth-service-account'],
        audience: flags['push-auth-token-audience'] ?? flags['push-endpoint'],
      };
  }
  if (flags['dead-letter-topic']) {
    need(state.topics, flags['dead-letter-topic'], 'dead-letter topic');
    s.deadLetterPolicy = {
      deadLetterTopic: `projects/${P}/topics/${flags['dead-letter-topic']}`,
      maxDeliveryAttempts: Number(flags['max-delivery-attempts'] ?? 5),
    };
  }
  if (flags['min-retry-delay']) s.retryPolicy = { minimumBackoff: flags['min-retry-delay'], maximumBackoff: flags['max-retry-delay'] };
  if (flags['ack-deadline']) s.ackDeadlineSeconds = Number(flags['ack-deadline']);
  if (flags.labels) s.labels = labelsOf(flags.labels);
  if (flags['update-labels']) s.labels = { ...(s.labels ?? {}), ...labelsOf(flags['update-labels']) };
  return s;
}

function jobJson(P, region, name, flags, old) {
  const j = old ?? { name: `projects/${P}/locations/${region}/jobs/${name}`, state: 'ENABLED', timeZone: 'Etc/UTC', httpTarget: { httpMethod: 'POST' } };
  if (flags.schedule) j.schedule = flags.schedule;
  if (flags['time-zone']) j.timeZone = flags['time-zone'];
  if (flags.description) j.description = flags.description;
  if (flags['attempt-deadline']) j.attemptDeadline = flags['attempt-deadline'];
  if (flags.uri) j.httpTarget.uri = flags.uri;
  if (flags['http-method']) j.httpTarget.httpMethod = String(flags['http-method']).toUpperCase();
  if (flags['oidc-service-account-email'])
    j.httpTarget.oidcToken = { serviceAccountEmail: flags['oidc-service-account-email'], audience: flags['oidc-token-audience'] ?? flags.uri };
  return j;
}

function handle(command, pos, flags, state, stdin, env) {
  const P = flags.project;
  const [verb] = command.split(' ').slice(-1);
  if (/-iam-policy(-binding)?$/.test(command)) return iam(command, pos[0], flags, state);
  switch (command) {
    case 'projects describe':
      return { projectId: pos[0], projectNumber: state.projectNumber, name: pos[0], lifecycleState: 'ACTIVE' };
    case 'services list':
      return Object.keys(state.services).map((s) => ({ name: `projects/${state.projectNumber}/services/${s}`, config: { name: s }, state: 'ENABLED' }));
    case 'services enable':
      for (const s of pos) state.services[s] = true;
      return;
    case 'iam service-accounts list':
      return Object.entries(state.accounts).map(([id, a]) => ({
        email: `${id}@${P}.iam.gserviceaccount.com`,
        name: `projects/${P}/serviceAccounts/${id}@${P}.iam.gserviceaccount.com`,
        ...a,
      }));
    case 'iam service-accounts create':
      if (pos[0] in state.accounts) throw exists(`service account ${pos[0]}`);
      state.accounts[pos[0]] = { displayName: flags['display-name'] ?? '', description: flags.description ?? '' };
      return;
    case 'iam service-accounts update': {
      const a = need(state.accounts, pos[0].split('@')[0], 'service account');
      if (flags['display-name'] !== undefined) a.displayName = flags['display-name'];
      if (flags.description !== undefined) a.description = flags.description;
      return;
    }
    case 'iam service-accounts delete':
      need(state.accounts, pos[0].split('@')[0], 'service account');
      delete state.accounts[pos[0].split('@')[0]];
      delete state.policies[`iam service-accounts/${pos[0]}`];
      return;
    case 'firestore databases describe': {
      const d = need(state.databases, flags.database ?? '(default)', 'database');
      return { name: `projects/${P}/databases/${flags.database}`, locationId: d.locationId, type: d.type };
    }
    case 'firestore databases create':
      if (flags.database in state.databases) throw exists(`database ${flags.database}`);
      state.databases[flags.database] = { locationId: flags.location, type: flags.type === 'firestore-native' ? 'FIRESTORE_NATIVE' : 'DATASTORE_MODE' };
      return;
    case 'firestore indexes composite list':
      need(state.databases, flags.database, 'database');
      return Object.entries(state.indexes)
        .filter(([, ix]) => ix.database === flags.database)
        .map(([id, ix]) => ({
          name: `projects/${P}/databases/${ix.database}/collectionGroups/${ix.group}/indexes/${id}`,
          queryScope: ix.queryScope,
          fields: [...ix.fields, { fieldPath: '__name__', order: ix.fields.at(-1).order ?? 'ASCENDING' }],
          state: 'READY',
        }));
    case 'firestore indexes composite create': {
      need(state.databases, flags.database, 'database');
      const fields = flags['field-config'].map((fc) => {
        const kv = Object.fromEntries(fc.split(',').map((p) => p.split('=')));
        return kv['array-config']
          ? { fieldPath: kv['field-path'], arrayConfig: kv['array-config'].toUpperCase() }
          : { fieldPath: kv['field-path'], order: kv.order.toUpperCase() };
      });
      const ix = {
        database: flags.database,
        group: flags['collection-group'],
        queryScope: flags['query-scope'] === 'collection-group' ? 'COLLECTION_GROUP' : 'COLLECTION',
        fields,
      };
      if (Object.values(state.indexes).some((o) => JSON.stringify(o) === JSON.stringify(ix))) throw exists('index');
      state.indexes[`CICAgJim${state.nextId++}`] = ix;
      return;
    }
    case 'firestore indexes composite delete':
      need(state.indexes, pos[0], 'index');
      delete state.indexes[pos[0]];
      return;
    case 'firestore indexes fields list':
      need(state.databases, flags.database, 'database');
      return Object.entries(state.fields)
        .filter(([k]) => k.startsWith(`${flags.database}/${flags['collection-group']}.`))
        .map(([k, f]) => ({
          name: `projects/${P}/databases/${flags.database}/collectionGroups/${flags['collection-group']}/fields/${k.split('.').slice(1).join('.')}`,
          indexConfig: f.indexConfig,
        }));
    case 'firestore indexes fields update': {
      need(state.databases, flags.database, 'database');
      const key = `${flags.database}/${flags['collection-group']}.${pos[0]}`;
      if (flags['disable-indexes']) state.fields[key] = { indexConfig: {} };
      if (flags['clear-exemption']) delete state.fields[key];
      return;
    }
    case 'firestore fields ttls list': {
      need(state.databases, flags.database, 'database');
      const t = state.ttls?.[`${flags.database}/${flags['collection-group']}`];
      return t
        ? [
            {
              name: `projects/${P}/databases/${flags.database}/collectionGroups/${flags['collection-group']}/fields/${t.field}`,
              ttlConfig: { state: 'ACTIVE' },
            },
          ]
        : [];
    }
    case 'firestore fields ttls update': {
      need(state.databases, flags.database, 'database');
      const key = `${flags.database}/${flags['collection-group']}`;
      state.ttls ??= {};
      if (flags['enable-ttl']) {
        // Firestore allows one TTL field per collection group.
        if (state.ttls[key] && state.ttls[key].field !== pos[0])
          throw new Exit(1, `FAILED_PRECONDITION: ${key} already has the TTL field ${state.ttls[key].field}`);
        state.ttls[key] = { field: pos[0] };
      }
      if (flags['disable-ttl']) delete state.ttls[key];
      return;
    }
    case 'pubsub topics list':
      return Object.entries(state.topics).map(([t, v]) => ({ name: `projects/${P}/topics/${t}`, ...v }));
    case 'pubsub topics create':
      if (pos[0] in state.topics) throw exists(`topic ${pos[0]}`);
      state.topics[pos[0]] = flags.labels ? { labels: labelsOf(flags.labels) } : {};
      return;
    case 'pubsub topics update': {
      const t = need(state.topics, pos[0], 'topic');
      t.labels = { ...(t.labels ?? {}), ...labelsOf(flags['update-labels'] ?? '') };
      return;
    }
    case 'pubsub topics delete':
      need(state.topics, pos[0], 'topic');
      delete state.topics[pos[0]];
      delete state.policies[`pubsub topics/${pos[0]}`];
      return;
    case 'pubsub subscriptions list':
      return Object.values(state.subscriptions);
    case 'pubsub subscriptions create':
      if (pos[0] in state.subscriptions) throw exists(`subscription ${pos[0]}`);
      need(state.topics, flags.topic, 'topic');
      state.subscriptions[pos[0]] = subscriptionJson(state, P, pos[0], flags);
      return;
    case 'pubsub subscriptions update':
      state.subscriptions[pos[0]] = subscriptionJson(state, P, pos[0], flags, need(state.subscriptions, pos[0], 'subscription'));
      return;
    case 'pubsub subscriptions delete':
      need(state.subscriptions, pos[0], 'subscription');
      delete state.subscriptions[pos[0]];
      delete state.policies[`pubsub subscriptions/${pos[0]}`];
      return;
    case 'storage buckets describe':
      return need(state.buckets, pos[0].slice(5), 'bucket');
    case 'storage buckets create': {
      const name = pos[0].slice(5);
      if (name in state.buckets) throw exists(`bucket ${name}`);
      state.buckets[name] = {
        name,
        storage_url: `gs://${name}/`,
        location: String(flags.location).toUpperCase(),
        default_storage_class: 'STANDARD',
        uniform_bucket_level_access: flags['uniform-bucket-level-access'] === true,
        public_access_prevention: flags['public-access-prevention'] ? 'enforced' : 'inherited',
      };
      return;
    }
    case 'storage buckets update': {
      const b = need(state.buckets, pos[0].slice(5), 'bucket');
      if (flags['uniform-bucket-level-access']) b.uniform_bucket_level_access = true;
      if (flags['public-access-prevention']) b.public_access_prevention = 'enforced';
      if (flags['lifecycle-file']) b.lifecycle_config = JSON.parse(readFileSync(flags['lifecycle-file'], 'utf8'));
      if (flags['cors-file']) b.cors_config = JSON.parse(readFileSync(flags['cors-file'], 'utf8'));
      if (flags['clear-cors']) delete b.cors_config;
      if (flags['update-labels']) b.labels = { ...(b.labels ?? {}), ...labelsOf(flags['update-labels']) };
      return;
    }
    case 'storage buckets notifications list': {
      const name = pos[0].slice(5);
      need(state.buckets, name, 'bucket');
      return (state.notifications?.[name] ?? []).map((n) => ({ 'Bucket URL': `gs://${name}`, 'Notification Configuration': n }));
    }
    case 'storage buckets notifications create': {
      const name = pos[0].slice(5);
      need(state.buckets, name, 'bucket');
      need(state.topics, flags.topic, 'topic');
      const agent = `serviceAccount:service-${state.projectNumber}@gs-project-accounts.iam.gserviceaccount.com`;
      const publishers = state.policies[`pubsub topics/${flags.topic}`]?.bindings.find((b) => b.role === 'roles/pubsub.publisher')?.members ?? [];
      if (!flags['skip-topic-setup']) throw new Exit(2, 'fake gcloud: pass --skip-topic-setup (the deployer grants the publisher role itself)');
      if (!publishers.includes(agent)) throw new Exit(1, `PERMISSION_DENIED: ${agent} cannot publish to topic ${flags.topic}`);
      state.notifications ??= {};
      state.notifications[name] ??= [];
      state.notifications[name].push({
        id: String(state.nextId++),
        kind: 'storage#notification',
        topic: `//pubsub.googleapis.com/projects/${P}/topics/${flags.topic}`,
        event_types: String(flags['event-types']).split(','),
        payload_format: { json: 'JSON_API_V1', none: 'NONE' }[flags['payload-format'] ?? 'json'],
        ...(flags['object-prefix'] ? { object_name_prefix: flags['object-prefix'] } : {}),
      });
      return;
    }
    case 'storage buckets notifications delete': {
      const m = /^projects\/_\/buckets\/([^/]+)\/notificationConfigs\/(.+)$/.exec(pos[0]);
      if (!m) throw new Exit(1, `INVALID_ARGUMENT: not a notification configuration URL: ${pos[0]}`);
      const list = state.notifications?.[m[1]] ?? [];
      if (!list.some((n) => n.id === m[2])) throw notFound(`notification ${pos[0]}`);
      state.notifications[m[1]] = list.filter((n) => n.id !== m[2]);
      return;
    }
    case 'storage buckets delete':
      need(state.buckets, pos[0].slice(5), 'bucket');
      delete state.buckets[pos[0].slice(5)];
      return;
    case 'secrets list':
      return Object.entries(state.secrets).map(([s, v]) => ({
        name: `projects/${state.projectNumber}/secrets/${s}`,
        labels: v.labels,
        replication: { automatic: {} },
      }));
    case 'secrets create':
      if (pos[0] in state.secrets) throw exists(`secret ${pos[0]}`);
      if (flags['data-file'] !== '-' || stdin === '') throw new Exit(1, 'fake gcloud: secret values must come on stdin');
      state.secrets[pos[0]] = { labels: labelsOf(flags.labels ?? ''), versions: [stdin] };
      return;
    case 'secrets update': {
      const s = need(state.secrets, pos[0], 'secret');
      s.labels = { ...s.labels, ...labelsOf(flags['update-labels'] ?? '') };
      return;
    }
    case 'secrets delete':
      need(state.secrets, pos[0], 'secret');
      delete state.secrets[pos[0]];
      delete state.policies[`secrets/${pos[0]}`];
      return;
    case 'secrets versions access': {
      const s = need(state.secrets, flags.secret, 'secret');
      return s.versions.at(-1);
    }
    case 'secrets versions add':
      need(state.secrets, pos[0], 'secret').versions.push(stdin);
      return;
    case 'functions describe': {
      const f = need(state.functions, pos[0], 'function');
      const url = pos[0] === 'api' && env.FAKE_GCLOUD_API_URL ? env.FAKE_GCLOUD_API_URL : f.serviceConfig.uri;
      return { ...f, url, serviceConfig: { ...f.serviceConfig, uri: url } };
    }
    case 'functions deploy':
      return deploy(state, P, pos[0], flags);
    case 'functions delete':
      need(state.functions, pos[0], 'function');
      delete state.functions[pos[0]];
      delete state.policies[`run services/${pos[0]}`];
      return;
    case 'scheduler jobs list':
      return Object.values(state.jobs).filter((j) => j.name.includes(`/locations/${flags.location}/`));
    case 'scheduler jobs create http':
      if (pos[0] in state.jobs) throw exists(`job ${pos[0]}`);
      state.jobs[pos[0]] = jobJson(P, flags.location, pos[0], flags);
      return;
    case 'scheduler jobs update http':
      state.jobs[pos[0]] = jobJson(P, flags.location, pos[0], flags, need(state.jobs, pos[0], 'job'));
      return;
    case 'scheduler jobs delete':
      need(state.jobs, pos[0], 'job');
      delete state.jobs[pos[0]];
      return;
    default:
      throw new Exit(2, `fake gcloud does not simulate ${command} (${verb})`);
  }
}

function deploy(state, P, name, flags) {
  const sa = flags['service-account'];
  if (!(sa.split('@')[0] in state.accounts)) throw new Exit(1, `INVALID_ARGUMENT: service account ${sa} does not exist`);
  const secrets = String(flags['set-secrets'] ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const [key, ref] = kv.split('=');
      const [secret, version] = ref.split(':');
      need(state.secrets, secret, 'secret');
      const readers = state.policies[`secrets/${secret}`]?.bindings.find((b) => b.role === 'roles/secretmanager.secretAccessor')?.members ?? [];
      if (!readers.includes(`serviceAccount:${sa}`)) throw new Exit(1, `PERMISSION_DENIED: ${sa} cannot access secret ${secret}`);
      return { key, projectId: P, secret, version };
    });
  const old = state.functions[name];
  const region = flags.region;
  state.functions[name] = {
    name: `projects/${P}/locations/${region}/functions/${name}`,
    environment: 'GEN_2',
    state: 'ACTIVE',
    labels: { ...(old?.labels ?? {}), 'deployment-tool': 'cli-gcloud', ...labelsOf(flags['update-labels'] ?? '') },
    buildConfig: { runtime: flags.runtime, entryPoint: flags['entry-point'], source: {} },
    serviceConfig: {
      uri: `https://${region}-${P}.cloudfunctions.net/${name}`,
      availableMemory: flags.memory,
      timeoutSeconds: Number(String(flags.timeout).replace(/s$/, '')),
      maxInstanceCount: Number(flags['max-instances']),
      serviceAccountEmail: sa,
      environmentVariables: { ...JSON.parse(readFileSync(flags['env-vars-file'], 'utf8')), LOG_EXECUTION_ID: 'true' },
      secretEnvironmentVariables: secrets,
    },
  };
}
