/**
 * The configuration table: defaults, parsing, fail-fast errors that name the variable, and
 * `.env.example` kept in step with the table.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_SECTIONS, CONFIG_TABLE, ConfigError, loadConfig } from '../shared/config.js';

/** The settings google mode requires. */
const GOOGLE = {
  PATCHBAY_MODE: 'google',
  PATCHBAY_GCP_PROJECT: 'p',
  PATCHBAY_BUCKET: 'b',
  UPSTASH_REDIS_REST_URL: 'http://r',
  UPSTASH_REDIS_REST_TOKEN: 't',
  PATCHBAY_JWT_SECRET: 's'.repeat(32),
  PATCHBAY_OIDC_AUDIENCE: 'https://europe-west1-p.cloudfunctions.net',
  PATCHBAY_OIDC_EMAILS: 'pusher@p.iam.gserviceaccount.com',
};

describe('config', () => {
  it('uses the defaults when nothing is set', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.dataDir).toBe('./data');
    expect(c.mode).toBe('embedded');
    expect(c.anonymousAuth).toBe(true);
  });

  it('parses numbers, enums and booleans', () => {
    const c = loadConfig({
      ...GOOGLE,
      PORT: '9000',
      PATCHBAY_ANONYMOUS_AUTH: 'false',
      PATCHBAY_MAX_OPS: '5',
    });
    expect(c).toMatchObject({ port: 9000, mode: 'google', anonymousAuth: false, maxOps: 5 });
  });

  it('fails fast naming every bad variable', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', PATCHBAY_MODE: 'cloud', PATCHBAY_JWT_SECRET: 'short' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    for (const name of ['PORT', 'PATCHBAY_MODE', 'PATCHBAY_JWT_SECRET']) expect(msg).toContain(name);
  });

  it('allows the Firebase Auth emulator (unsigned tokens) only with a demo- project', () => {
    const emu = { FIREBASE_AUTH_EMULATOR_HOST: '127.0.0.1:9099' };
    expect(loadConfig({ ...emu, PATCHBAY_FIREBASE_PROJECT: 'demo-app' }).firebaseAuthEmulatorHost).toBe('127.0.0.1:9099');
    expect(loadConfig({ PATCHBAY_FIREBASE_PROJECT: 'my-app' }).firebaseProject).toBe('my-app');
    expect(() => loadConfig({ ...emu, PATCHBAY_FIREBASE_PROJECT: 'my-app' })).toThrow(/FIREBASE_AUTH_EMULATOR_HOST.*demo-/);
    expect(() => loadConfig({ ...GOOGLE, ...emu }, { firebaseProject: 'my-app' })).toThrow(ConfigError);
    expect(() => loadConfig({ PATCHBAY_FIREBASE_PROJECT: 'My App' })).toThrow(/PATCHBAY_FIREBASE_PROJECT/);
  });

  it('refuses a hand-over inbox wait that is not shorter than the hand-over timeout (with the bus on)', () => {
    expect(loadConfig({ PATCHBAY_HANDOVER_INBOX_AFTER_MS: '2000', PATCHBAY_HANDOVER_TIMEOUT_MS: '5000' }).handoverInboxAfterMs).toBe(2000);
    expect(() => loadConfig({ PATCHBAY_HANDOVER_INBOX_AFTER_MS: '5000', PATCHBAY_HANDOVER_TIMEOUT_MS: '5000' })).toThrow(
      /PATCHBAY_HANDOVER_INBOX_AFTER_MS must be less than/,
    );
    expect(loadConfig({ PATCHBAY_HANDOVER_BUS: 'false', PATCHBAY_HANDOVER_INBOX_AFTER_MS: '5000', PATCHBAY_HANDOVER_TIMEOUT_MS: '5000' }).handoverBus).toBe(
      false,
    );
  });

  it('reads the ack point, resolves `auto` by mode, and refuses an unknown one', () => {
    expect(loadConfig({}).ackAfter).toBe('commit');
    expect(loadConfig({ PATCHBAY_ACK_AFTER: 'auto' }).ackAfter).toBe('commit');
    expect(loadConfig({ ...GOOGLE }).ackAfter).toBe('publish');
    expect(loadConfig({ ...GOOGLE, PATCHBAY_ACK_AFTER: 'commit' }).ackAfter).toBe('commit');
    expect(loadConfig({ PATCHBAY_ACK_AFTER: 'publish' }).ackAfter).toBe('publish');
    // An override of `auto` is resolved too.
    expect(loadConfig(GOOGLE, { ackAfter: 'auto' }).ackAfter).toBe('publish');
    expect(() => loadConfig({ PATCHBAY_ACK_AFTER: 'later' })).toThrow(/PATCHBAY_ACK_AFTER/);
  });

  it('puts every setting in exactly one section', () => {
    const keys = Object.values(CONFIG_SECTIONS).flat();
    expect([...keys].sort()).toEqual(Object.keys(CONFIG_TABLE).sort());
  });

  it('reads rate rules as <tokens>/<window> and trusted proxies, and refuses bad ones', () => {
    expect(loadConfig({}).rateWrite).toEqual({ tokens: 100, windowMs: 5000 });
    expect(loadConfig({}).rateWriteKiB).toEqual({ tokens: 8192, windowMs: 60_000 }); // 8 MiB bursts, 8 MiB a minute
    expect(loadConfig({ PATCHBAY_RATE_SIGNIN: '5/2h' }).rateSignIn).toEqual({ tokens: 5, windowMs: 7_200_000 });
    expect(loadConfig({ PATCHBAY_RATE_WRITE: '1/250ms' }).rateWrite).toEqual({ tokens: 1, windowMs: 250 });
    for (const bad of ['0/1s', '5', '5/1d', '5/s', '-1/1s']) expect(() => loadConfig({ PATCHBAY_RATE_WRITE: bad })).toThrow(/PATCHBAY_RATE_WRITE/);
    expect(loadConfig({ PATCHBAY_TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback, 10.0.0.0/8');
    expect(loadConfig({ PATCHBAY_TRUST_PROXY: '2' }).trustProxy).toBe('2');
    // auto: one Google front end in google mode (every socket address is Google's), none embedded.
    expect(loadConfig({ ...GOOGLE }).trustProxy).toBe('1');
    expect(loadConfig({}).trustProxy).toBe('');
    expect(() => loadConfig({ PATCHBAY_TRUST_PROXY: 'everyone' })).toThrow(/PATCHBAY_TRUST_PROXY/);
    expect(() => loadConfig({ PATCHBAY_LIMITS: 'maybe' })).toThrow(/PATCHBAY_LIMITS/);
  });

  it('lists every variable in .env.example', () => {
    const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
    for (const s of Object.values(CONFIG_TABLE)) expect(example).toContain(`#${s.env}=`);
  });
});

describe('google mode', () => {
  it('names every required setting that is missing', () => {
    expect(() => loadConfig({ PATCHBAY_MODE: 'google' })).toThrow(
      /PATCHBAY_GCP_PROJECT[\s\S]*PATCHBAY_BUCKET[\s\S]*UPSTASH_REDIS_REST_URL[\s\S]*UPSTASH_REDIS_REST_TOKEN[\s\S]*PATCHBAY_JWT_SECRET[\s\S]*PATCHBAY_OIDC_AUDIENCE[\s\S]*PATCHBAY_OIDC_EMAILS/,
    );
  });
});

describe('OIDC checks of the internal endpoints', () => {
  const { PATCHBAY_OIDC_AUDIENCE: _a, PATCHBAY_OIDC_EMAILS: _e, ...bare } = GOOGLE;
  const BASE = 'https://europe-west1-p.cloudfunctions.net';

  it('are on in google mode, and a deployment that names no audience or allow-list does not start', () => {
    expect(() => loadConfig(bare)).toThrow(ConfigError);
    expect(() => loadConfig(bare)).toThrow(/PATCHBAY_OIDC_AUDIENCE[\s\S]*PATCHBAY_OIDC_EMAILS/);
    expect(() => loadConfig({ ...bare, PATCHBAY_OIDC_AUDIENCE: BASE })).toThrow(/PATCHBAY_OIDC_EMAILS/);
    const c = loadConfig({
      ...bare,
      PATCHBAY_OIDC_AUDIENCE: `${BASE}/`,
      PATCHBAY_OIDC_EMAILS: ' Pusher@p.iam.gserviceaccount.com, scheduler@p.iam.gserviceaccount.com ',
    });
    expect(c).toMatchObject({ oidc: 'on', oidcAudience: BASE, oidcEmails: ['pusher@p.iam.gserviceaccount.com', 'scheduler@p.iam.gserviceaccount.com'] });
    expect(loadConfig({ ...bare, PATCHBAY_OIDC: 'off' }).oidc).toBe('off');
  });

  it('are off in embedded mode unless turned on, and then need their settings too', () => {
    expect(loadConfig({}).oidc).toBe('off');
    expect(() => loadConfig({ PATCHBAY_OIDC: 'on' })).toThrow(/PATCHBAY_OIDC_AUDIENCE/);
  });

  it('refuse bad values, naming the variable', () => {
    expect(() => loadConfig({ PATCHBAY_OIDC: 'maybe' })).toThrow(/PATCHBAY_OIDC=/);
    expect(() => loadConfig({ PATCHBAY_OIDC_EMAILS: 'pusher, @x' })).toThrow(/PATCHBAY_OIDC_EMAILS/);
    expect(() => loadConfig({ PATCHBAY_OIDC_AUDIENCE: 'https://x.example/?a=1' })).toThrow(/PATCHBAY_OIDC_AUDIENCE/);
    expect(() => loadConfig({ PATCHBAY_OIDC_AUDIENCE: 'not a url' })).toThrow(/PATCHBAY_OIDC_AUDIENCE/);
    expect(() => loadConfig({ PATCHBAY_OIDC_CERTS_URL: 'ftp://x' })).toThrow(/PATCHBAY_OIDC_CERTS_URL/);
  });
});

describe('CORS origins', () => {
  it('default to * in embedded mode and to none in google mode', () => {
    expect(loadConfig({}).corsOrigins).toBe('*');
    expect(loadConfig(GOOGLE).corsOrigins).toEqual([]);
    expect(loadConfig({ ...GOOGLE, PATCHBAY_CORS_ORIGINS: '*' }).corsOrigins).toBe('*');
    expect(loadConfig({ PATCHBAY_CORS_ORIGINS: 'none' }).corsOrigins).toEqual([]);
  });

  it('read a list of origins, and refuse anything that is not an origin', () => {
    expect(loadConfig({ PATCHBAY_CORS_ORIGINS: 'https://app.example.com, http://localhost:5173' }).corsOrigins).toEqual([
      'https://app.example.com',
      'http://localhost:5173',
    ]);
    for (const bad of [
      'https://app.example.com/',
      'app.example.com',
      'https://a.example.com/path',
      'https://A.example.com',
      'https://a.example.com:443',
      'ftp://a.example.com',
    ]) {
      expect(() => loadConfig({ PATCHBAY_CORS_ORIGINS: bad }), bad).toThrow(/PATCHBAY_CORS_ORIGINS/);
    }
  });

  it('name retired variables instead of ignoring them', () => {
    expect(() => loadConfig({ PATCHBAY_CORS_ORIGIN: '*' })).toThrow(/PATCHBAY_CORS_ORIGIN is no longer read: use PATCHBAY_CORS_ORIGINS/);
    expect(() => loadConfig({ PATCHBAY_CACHE_MAX_SCOPES: '10' })).toThrow(/PATCHBAY_CACHE_BYTES/);
  });
});
