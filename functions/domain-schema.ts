/**
 * `npm run schema`: writes docs/domain-config.schema.json, the domain configuration's JSON Schema
 * generated from its zod schema (shared/domains/json-schema.ts). Run it after changing the
 * configuration's schema; test/domain-config.test.ts fails while the committed file is stale.
 */
import { writeFileSync } from 'node:fs';
import { DOMAIN_SCHEMA_FILE, domainConfigJsonSchemaText } from '../shared/domains/json-schema.js';

writeFileSync(DOMAIN_SCHEMA_FILE, domainConfigJsonSchemaText());
console.log(`wrote ${DOMAIN_SCHEMA_FILE}`);
