/**
 * The domain configuration's schema as JSON Schema (draft 2020-12), generated from the zod schema
 * (shared/domains/config-schema.ts) so editors can validate a configuration as it is written.
 * Published as docs/domain-config.schema.json (`npm run schema` rewrites it; a test checks that
 * the committed file is what this generates). Refinements zod cannot express in JSON Schema
 * (origins, webhook URLs, unique webhook names, the number of types) are checked on upload only.
 */
import { z } from 'zod';
import { domainConfigSchema } from './config-schema.js';

/** Where the file is published, relative to the repository. */
export const DOMAIN_SCHEMA_FILE = 'docs/domain-config.schema.json';

/** The file's text: the schema as JSON, two-space indented, ending with a newline. */
export function domainConfigJsonSchemaText(): string {
  const schema = z.toJSONSchema(domainConfigSchema, { io: 'input', target: 'draft-2020-12' });
  return `${JSON.stringify({ ...schema, title: 'patchbay domain configuration' }, null, 2)}\n`;
}
