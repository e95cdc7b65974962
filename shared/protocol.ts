/**
 * The v1 wire types: request bodies (zod-validated), and the records the ports store.
 * docs/openapi.yaml describes the same shapes for clients.
 */
import { z } from 'zod';
import type { Json } from './json.js';
import { type Patch, type PatchEvent, SCOPE_ID } from './wire.js';

/**
 * A domain (the app a token and a scope belong to): a lower-case host name, with a port when the
 * app's origin has a non-default one (`app.example.com`, `localhost:5173`), or `default`.
 */
export const DOMAIN = /^(?=.{1,253}(:|$))[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$/;
export const domainSchema = z.string().regex(DOMAIN, 'must be a lower-case host name, optionally with :port');

export { OPS, type Operation, type OpName, type Patch, type PatchEvent, SCOPE_ID } from './wire.js';

/** A JSON Pointer (RFC 6901): empty, or `/`-separated segments where `~` only appears as `~0`/`~1`. */
const pointer = z.string().regex(/^(\/([^~]|~[01])*)*$/, 'must be a JSON Pointer ("" or "/a/b", with ~0 and ~1 escapes)');
export const jsonValue: z.ZodType<Json> = z.json() as unknown as z.ZodType<Json>;

// RFC 6902 §4: members an operation does not define MUST be ignored (Appendix A.11), so these
// objects are not strict. zod drops such members (and outputs the defined ones in this order),
// so what is hashed, stored, streamed and served as history is the canonical patch: a retry that
// differs only in ignored members is the same patch. A defined member of the wrong type is still
// refused, and a member named `__proto__` anywhere in a body is refused before this schema runs
// (shared/http/body.ts). The request envelope around the patch stays strict.
const valueOp = z.object({ op: z.enum(['add', 'replace', 'test']), path: pointer, value: jsonValue });
const removeOp = z.object({ op: z.literal('remove'), path: pointer });
const fromOp = z.object({ op: z.enum(['move', 'copy']), path: pointer, from: pointer });

export const operationSchema = z.discriminatedUnion('op', [valueOp, removeOp, fromOp]);
export const patchSchema = z.array(operationSchema);

const sessionId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must match [A-Za-z0-9_.:-]{1,128}');
const index = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** A patch request's members (`POST /v1/scopes/{id}/patches`, and each item of a batch). */
const patchRequestFields = {
  patch: patchSchema,
  ii: index.min(1).optional(),
  session: sessionId.optional(),
  si: index.optional(),
};
const retryKeyTogether: [(b: { session?: string; si?: number }) => boolean, { message: string; path: string[] }] = [
  (b) => (b.session === undefined) === (b.si === undefined),
  { message: 'session and si go together', path: ['si'] },
];

export const patchRequestSchema = z.strictObject(patchRequestFields).refine(...retryKeyTogether);
export type PatchRequest = z.infer<typeof patchRequestSchema>;

/**
 * `POST /v1/batch`: many patch requests, to one or several scopes, each with its own `ii` and
 * retry key. How many it may hold is a limit (PATCHBAY_MAX_BATCH), checked by the route (413).
 */
export const batchItemSchema = z
  .strictObject({ scope: z.string().regex(SCOPE_ID, 'must match [A-Za-z0-9_.:-]{1,128}'), ...patchRequestFields })
  .refine(...retryKeyTogether);
export const batchRequestSchema = z.strictObject({ patches: z.array(batchItemSchema).min(1) });
export type BatchRequest = z.infer<typeof batchRequestSchema>;

/**
 * Who may see a scope besides its owner and the users listed in its access (shared/engine/access.ts
 * applies it): `private` nobody else, `domain` any signed-in user of the scope's domain,
 * `authenticated` any signed-in user, `public` anyone, even without a token. Only the owner and
 * the listed writers may patch, whatever the visibility.
 */
export const VISIBILITIES = ['private', 'domain', 'authenticated', 'public'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/** A user id as access lists name it (what `user.id` is: `anon:<uuid>`, `firebase:<uid>`...). */
const userId = z.string().min(1).max(256);

/**
 * A scope's access as the owner sets it (`PUT /v1/scopes/{id}/access`, or `access` on create):
 * the whole object each time. How many users the two lists may name together is a limit
 * (PATCHBAY_MAX_ACCESS_USERS), checked by the engine.
 */
export const accessSchema = z.strictObject({
  visibility: z.enum(VISIBILITIES),
  readers: z.array(userId).default([]),
  writers: z.array(userId).default([]),
});
export type AccessRequest = z.infer<typeof accessSchema>;

/** A scope's access as stored with its head: the lists deduplicated, and a revision. */
export interface ScopeAccess {
  visibility: Visibility;
  /** Users who may read (get, stream, tickets, history). */
  readers: string[];
  /** Users who may also patch. */
  writers: string[];
  /** How many times the access was changed: 0 as created. Ledger.setAccess moves it by one. */
  rev: number;
}

/**
 * A scope's name, unique per (domain, owner) (the ledger enforces it): 1 to 256 characters, none
 * of them a control character (C0, DEL, C1), so a name prints and logs as what it is, nor an
 * unpaired surrogate (the Firestore ledger keys names by their UTF-8 bytes: ./adapters/google/firestore/layout.ts),
 * and not `.` or `..`, which URLs (`/v1/names/{name}`) cannot carry. Names stored
 * before this rule keep working; the listing filter (`GET /v1/scopes?name=`) still takes any.
 */
export const NAME_MAX = 256;
export const nameSchema = z
  .string()
  .min(1)
  .max(NAME_MAX)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  .regex(/^[^\u0000-\u001f\u007f-\u009f]*$/, 'must not contain control characters')
  .regex(/^\P{Cs}*$/u, 'must not contain unpaired surrogates')
  .refine((s) => s !== '.' && s !== '..', 'must not be . or .. (no URL path can carry them)');

export const createScopeSchema = z.strictObject({
  id: z.string().regex(SCOPE_ID, 'must match [A-Za-z0-9_.:-]{1,128}').optional(),
  name: nameSchema.optional(),
  type: z.string().max(128).optional(),
  state: jsonValue.optional(),
  /** Default: private (only the owner). */
  access: accessSchema.optional(),
});
export type CreateScopeRequest = z.infer<typeof createScopeSchema>;

/** A MIME type as `Content-Type` carries it: `type/subtype`, optionally with parameters. */
const mimeType = z
  .string()
  .max(128)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*( *; *[A-Za-z0-9_.+-]+=("[^"]*"|[A-Za-z0-9_.+-]+))*$/,
    'must be a MIME type, type/subtype',
  );

/** `POST /v1/uploads`: the file to come. `md5` is base64 (as `Content-MD5`); with it, the upload URL accepts only those bytes. */
export const createUploadSchema = z.strictObject({
  name: z.string().min(1).max(256).optional(),
  type: mimeType,
  size: z.number().int().min(0).optional(),
  md5: z
    .string()
    .regex(/^[A-Za-z0-9+/]{22}==$/, 'must be a base64 MD5 (24 characters)')
    .optional(),
});
export type CreateUploadRequest = z.infer<typeof createUploadSchema>;

/**
 * `PUT /v1/names/{name}` (create-or-resolve): what a scope created under the name starts with.
 * Ignored when the caller already has a scope of that name in its domain (it is returned as it is).
 */
export const createNamedSchema = createScopeSchema.omit({ id: true, name: true });
export type CreateNamedRequest = z.infer<typeof createNamedSchema>;

/** `PUT /v1/scopes/{id}/name`: the new name, or null to make the scope unnamed (freeing its name). */
export const renameSchema = z.strictObject({ name: nameSchema.nullable() });

/**
 * `GET /v1/names/{name}`: whose named scope, in which domain (default: the caller's own, in the
 * caller's domain).
 */
export const resolveNameQuerySchema = z.strictObject({
  owner: z.string().min(1).max(256).optional(),
  domain: domainSchema.optional(),
});

/** A listing's paging parameters: `limit` (held to PATCHBAY_MAX_LIST_PAGE by the route) and `cursor` (a page's `next`, opaque). */
const pageQuery = {
  limit: z
    .string()
    .regex(/^[1-9][0-9]{0,5}$/, 'must be a positive integer')
    .transform(Number)
    .optional(),
  cursor: z.string().max(2048).optional(),
};

/**
 * `GET /v1/scopes`: its query parameters. `limit` is held to PATCHBAY_MAX_LIST_PAGE by the route;
 * `cursor` is a page's `next`, opaque.
 */
export const listScopesQuerySchema = z.strictObject({
  domain: domainSchema.optional(),
  type: z.string().max(128).optional(),
  name: z.string().max(256).optional(),
  ...pageQuery,
});

/**
 * Scope types and names starting with this are patchbay's own (a tag is a scope of type
 * TAG_SCOPE_TYPE): no client creates a scope of such a type or takes such a name through the
 * generic routes, and scopes of such a type take no patches and no rename (shared/engine/decide.ts).
 */
export const RESERVED_PREFIX = 'patchbay/';
/** The type of every tag scope (shared/domains/tags.ts). */
export const TAG_SCOPE_TYPE = 'patchbay/tag';
/** A tag type: like a scope id, 1 to 64 of `[A-Za-z0-9_.:-]`, so a tag's name and index key carry it unescaped. */
export const TAG_TYPE = /^[A-Za-z0-9_.:-]{1,64}$/;
export const tagTypeSchema = z.string().regex(TAG_TYPE, 'must match [A-Za-z0-9_.:-]{1,64}');
export const MAX_TAG_CONTEXT = 16;
export const MAX_TAG_CONTEXT_ITEM = 256;

/**
 * `POST /v1/scopes/{target}/tags`: the tag's type and its optional context, a short list of
 * strings (the seed's `context[]`; mirrored as a `text[]` column).
 */
export const createTagSchema = z.strictObject({
  tagType: tagTypeSchema,
  context: z.array(z.string().max(MAX_TAG_CONTEXT_ITEM)).max(MAX_TAG_CONTEXT).optional(),
});
export type CreateTagRequest = z.infer<typeof createTagSchema>;

/** `GET /v1/scopes/{target}/tags`: the tags on a target, of one type or all. */
export const listTargetTagsQuerySchema = z.strictObject({ tagType: tagTypeSchema.optional(), ...pageQuery });
/** `GET /v1/tags`: the caller's own tags, of one type or all, in one domain (default: the caller's). */
export const listMyTagsQuerySchema = z.strictObject({ tagType: tagTypeSchema.optional(), domain: domainSchema.optional(), ...pageQuery });

/** A tag's state (the state of its tag scope). */
export interface TagState {
  tagType: string;
  target: string;
  context: string[];
}

/** The domain of a scope created without one (and, until tokens carry one, of every caller). */
export const DEFAULT_DOMAIN = 'default';

/** `POST /v1/auth/anonymous`: an optional body naming the domain (server clients; see shared/http/domain.ts). */
export const anonymousRequestSchema = z.strictObject({ domain: domainSchema.optional() });
export type AnonymousRequest = z.infer<typeof anonymousRequestSchema>;

/**
 * `POST /v1/domains/{domain}/tokens`: the new service token's label and lifetime in seconds (at
 * most PATCHBAY_SERVICE_TOKEN_MAX_TTL_S, which the route checks).
 */
export const serviceTokenRequestSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(100)
    .regex(/^\P{Cc}*$/u, 'must not contain control characters'),
  ttlSeconds: z.number().int().min(60),
});
export type ServiceTokenRequest = z.infer<typeof serviceTokenRequestSchema>;

/**
 * `PUT /v1/domains/{domain}/origins`: the whole list of browser origins the domain allows
 * (shared/http/cors.ts). Each must be an origin of the domain's own host (checked by the
 * route), so the list holds at most `https://<domain>` and `http://<domain>`.
 */
export const domainOriginsSchema = z.strictObject({ origins: z.array(z.string().max(300)).max(100) });
export type DomainOriginsRequest = z.infer<typeof domainOriginsSchema>;

/** Metadata kept with a scope's head. Times are milliseconds since the Unix epoch. */
export interface ScopeMeta {
  owner: string;
  domain: string;
  name: string | null;
  type: string | null;
  created: number;
  updated: number;
  /** Bytes of the state's JSON text at head. */
  size: number;
  /**
   * Who may read and write it. Missing on scopes stored before access existed: those read as
   * `authenticated` with no listed users (any signed-in user reads, the owner writes), which is
   * what every scope allowed then (shared/engine/access.ts, LEGACY_ACCESS).
   */
  access?: ScopeAccess;
}

/** One accepted patch, as the log stores it. */
export interface PatchRecord {
  scope: string;
  ii: number;
  patch: Patch;
  /** Commit time, ms since epoch. */
  at: number;
  /** User id of the author. */
  by: string;
  session: string | null;
  si: number | null;
  /** Hash of the patch text, so a retry under the same (session, si) can be checked. */
  hash: string;
  /** The scope's lease epoch when this patch was committed. */
  epoch: number;
}

export function toEvent(r: PatchRecord): PatchEvent {
  return { scope: r.scope, ii: r.ii, patch: r.patch, at: r.at, by: r.by };
}
