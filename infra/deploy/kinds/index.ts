/** Every resource kind, in the order `--prune` reverses (dependents after what they depend on). */
import type { Kind } from '../model.js';
import { apis } from './apis.js';
import { bindings } from './bindings.js';
import { bucket } from './bucket.js';
import { database, fields, indexes, ttls } from './firestore.js';
import { functions } from './functions.js';
import { notifications } from './notifications.js';
import { subscriptions, topics } from './pubsub.js';
import { scheduler } from './scheduler.js';
import { secrets } from './secrets.js';
import { serviceAccounts } from './service-accounts.js';

export const KINDS = [
  apis,
  serviceAccounts,
  database,
  indexes,
  fields,
  ttls,
  topics,
  bucket,
  notifications,
  secrets,
  functions,
  subscriptions,
  scheduler,
  bindings,
] as Kind[];
