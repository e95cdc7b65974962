/**
 * Firestore, four kinds:
 * - `firestore-database`: the Native-mode database the ledger lives in. Its location and type
 *   cannot change once created (reported as blocked); never deleted by `--prune` (it holds the data).
 * - `firestore-index`: a composite index the ledger's queries need (firestore.indexes.json, the
 *   same file the emulator setup reads). Deleted by `--prune` only on patchbay's collection groups.
 * - `firestore-field`: a single-field index setting; patchbay turns indexing off for large JSON
 *   text fields that are never queried (the same file's fieldOverrides). Never pruned.
 * - `firestore-ttl`: a TTL policy on the record kinds whose records expire (below).
 */
import { compareProps, type Kind, last } from '../model.js';

export interface DatabaseProps {
  location: string;
  type: 'FIRESTORE_NATIVE';
}

export const database: Kind<DatabaseProps> = {
  kind: 'firestore-database',
  async observe({ gcloud }, wanted) {
    const out = new Map<string, DatabaseProps>();
    for (const r of wanted) {
      const live = await gcloud.describe<{ locationId?: string; type?: string }>(['firestore', 'databases', 'describe', `--database=${r.name}`]);
      if (live) out.set(r.name, { location: live.locationId ?? '', type: live.type as 'FIRESTORE_NATIVE' });
    }
    return out;
  },
  diff: (want, live) => compareProps(want, live, ['location', 'type']),
  create: (_ctx, r) => [{ args: ['firestore', 'databases', 'create', `--database=${r.name}`, `--location=${r.props.location}`, '--type=firestore-native'] }],
};

export interface IndexField {
  fieldPath: string;
  order?: 'ASCENDING' | 'DESCENDING';
  arrayConfig?: 'CONTAINS';
}

export interface IndexProps {
  database: string;
  collectionGroup: string;
  queryScope: 'COLLECTION' | 'COLLECTION_GROUP';
  /** Without the implicit trailing `__name__`. */
  fields: IndexField[];
  /** The live index's id (for deleting); not compared. */
  id?: string;
}

/** An index's name in the model: its collection group and fields, which are what identify it. */
export const indexName = (p: Pick<IndexProps, 'collectionGroup' | 'queryScope' | 'fields'>): string =>
  `${p.collectionGroup}(${p.fields.map((f) => `${f.fieldPath} ${(f.order ?? `array-${f.arrayConfig}`).toLowerCase()}`).join(', ')})${p.queryScope === 'COLLECTION_GROUP' ? ' group' : ''}`;

interface LiveIndex {
  name: string;
  queryScope: 'COLLECTION' | 'COLLECTION_GROUP';
  fields: IndexField[];
}

export const indexes: Kind<IndexProps> = {
  kind: 'firestore-index',
  async observe({ gcloud }, wanted) {
    const out = new Map<string, IndexProps>();
    for (const db of new Set(['(default)', ...wanted.map((r) => r.props.database)])) {
      for (const ix of await gcloud.json<LiveIndex[]>(['firestore', 'indexes', 'composite', 'list', `--database=${db}`])) {
        const group = ix.name.split('/collectionGroups/')[1]?.split('/')[0] ?? '';
        const fields = ix.fields.filter((f) => f.fieldPath !== '__name__').map((f) => ({ ...f }));
        const p: IndexProps = { database: db, collectionGroup: group, queryScope: ix.queryScope, fields, id: last(ix.name) };
        out.set(indexName(p), p);
      }
    }
    return out;
  },
  diff: () => [],
  create: (_ctx, r) => [
    {
      args: [
        'firestore',
        'indexes',
        'composite',
        'create',
        `--database=${r.props.database}`,
        `--collection-group=${r.props.collectionGroup}`,
        `--query-scope=${r.props.queryScope === 'COLLECTION' ? 'collection' : 'collection-group'}`,
        ...r.props.fields.map((f) =>
          f.arrayConfig
            ? `--field-config=field-path=${f.fieldPath},array-config=contains`
            : `--field-config=field-path=${f.fieldPath},order=${(f.order ?? 'ASCENDING').toLowerCase()}`,
        ),
        // Building an index takes minutes; the deploy does not wait (queries that need it fail
        // with FAILED_PRECONDITION until it is ready, which `--check` does not count as drift).
        '--async',
      ],
    },
  ],
  ours: (ctx, _name, live) => [ctx.cfg.config.firestoreRoot, 'log'].includes(live.collectionGroup),
  remove: (_ctx, _name, live) => [{ args: ['firestore', 'indexes', 'composite', 'delete', live.id ?? '', `--database=${live.database}`] }],
};

export interface FieldProps {
  database: string;
  collectionGroup: string;
  field: string;
  /** Whether Firestore keeps single-field indexes of it (the default for every field). */
  indexed: boolean;
}

interface LiveField {
  name: string;
  indexConfig?: { indexes?: unknown[]; usesAncestorConfig?: boolean };
}

export const fields: Kind<FieldProps> = {
  kind: 'firestore-field',
  async observe({ gcloud }, wanted) {
    const out = new Map<string, FieldProps>();
    for (const r of wanted) {
      const { database, collectionGroup, field } = r.props;
      // A field without an override is indexed (Firestore's default), so it is "live" either way.
      const list = await gcloud.json<LiveField[]>([
        'firestore',
        'indexes',
        'fields',
        'list',
        `--database=${database}`,
        `--collection-group=${collectionGroup}`,
      ]);
      const found = list.find((f) => last(f.name) === field);
      const indexed = found ? found.indexConfig?.usesAncestorConfig === true || (found.indexConfig?.indexes ?? []).length > 0 : true;
      out.set(r.name, { database, collectionGroup, field, indexed });
    }
    return out;
  },
  update: (_ctx, r) => [
    {
      args: [
        'firestore',
        'indexes',
        'fields',
        'update',
        r.props.field,
        `--database=${r.props.database}`,
        `--collection-group=${r.props.collectionGroup}`,
        r.props.indexed ? '--clear-exemption' : '--disable-indexes',
        '--async',
      ],
    },
  ],
  // Never missing (see observe): only updated.
  create: () => [],
};

export interface TtlProps {
  database: string;
  /** A record kind's collection (`<root>/~records/<kind>`): a collection group of that name. */
  collectionGroup: string;
  field: string;
  enabled: boolean;
}

interface LiveTtl {
  name: string;
  ttlConfig?: { state?: string };
}

/**
 * Kind `firestore-ttl`: a TTL policy, which has Firestore delete a document (within about a day)
 * once the timestamp in its `field` has passed. patchbay sets one on the record kinds whose
 * records carry an expiry (shared/ports/records.ts, PutOptions): a backstop to the sweeps that
 * delete them. Read per collection group (`gcloud firestore fields ttls list`); a group without
 * the policy is "live" as disabled, so the policy is only ever updated (enabled). Never pruned.
 */
export const ttls: Kind<TtlProps> = {
  kind: 'firestore-ttl',
  async observe({ gcloud }, wanted) {
    const out = new Map<string, TtlProps>();
    for (const r of wanted) {
      const { database, collectionGroup, field } = r.props;
      const list = await gcloud.json<LiveTtl[] | null>([
        'firestore',
        'fields',
        'ttls',
        'list',
        `--database=${database}`,
        `--collection-group=${collectionGroup}`,
      ]);
      const found = (list ?? []).find((f) => last(f.name) === field);
      // CREATING: enabled, still being applied (not drift).
      const enabled = found !== undefined && ['ACTIVE', 'CREATING'].includes(found.ttlConfig?.state ?? '');
      out.set(r.name, { database, collectionGroup, field, enabled });
    }
    return out;
  },
  update: (_ctx, r) => [
    {
      args: [
        'firestore',
        'fields',
        'ttls',
        'update',
        r.props.field,
        `--database=${r.props.database}`,
        `--collection-group=${r.props.collectionGroup}`,
        r.props.enabled ? '--enable-ttl' : '--disable-ttl',
        '--async',
      ],
    },
  ],
  // Never missing (see observe): only updated.
  create: () => [],
};
