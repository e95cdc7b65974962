/**
 * A private Postgres cluster on this machine, for tests and local runs of the Postgres mirror:
 * `initdb` into a temporary directory, `pg_ctl start` on a free port (TCP on 127.0.0.1, its socket
 * in that directory), `pg_ctl stop` and the directory removed after. The system's own cluster is
 * never touched. Postgres refuses to run as root: when we are root, the binaries run as the
 * `postgres` user (`runuser`), which owns the directory.
 *
 * The binaries are found on PATH, else in Debian's `/usr/lib/postgresql/<version>/bin` (where
 * `apt-get install postgresql` puts them without linking them onto PATH), newest version first.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, hasTool } from './proc.js';

/** The path of a Postgres server binary (`initdb`, `pg_ctl`), or null when none is installed. */
export function postgresBin(name: 'initdb' | 'pg_ctl'): string | null {
  if (hasTool(name)) return name;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => /^[0-9]+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const p = join(root, v, 'bin', name);
    if (existsSync(p)) return p;
  }
  return null;
}

export interface LocalPostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication: any password is accepted). */
  url: string;
  port: number;
  stop(): Promise<void>;
}

function ids(user: string): { uid: number; gid: number } | null {
  try {
    const uid = Number(execFileSync('id', ['-u', user]).toString().trim());
    const gid = Number(execFileSync('id', ['-g', user]).toString().trim());
    return { uid, gid };
  } catch {
    return null;
  }
}

export async function startPostgres(): Promise<LocalPostgres> {
  const initdb = postgresBin('initdb');
  const pgCtl = postgresBin('pg_ctl');
  if (!initdb || !pgCtl) throw new Error('postgres is not installed (initdb, pg_ctl): apt-get install postgresql');
  const root = mkdtempSync(join(tmpdir(), 'patchbay-pg-'));
  const data = join(root, 'data');
  const asRoot = process.getuid?.() === 0;
  const run = (cmd: string, args: string[], timeout = 60_000) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    return execFileSync(file as string, argv as string[], { stdio: 'pipe', timeout });
  };
  if (asRoot) {
    const pg = ids('postgres');
    if (!pg) throw new Error('running as root needs a postgres user to run the server as');
    chownSync(root, pg.uid, pg.gid);
  }
  const port = await freePort();
  try {
    run(initdb, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
    const opts = `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
    run(pgCtl, ['-D', data, '-o', opts, '-l', join(root, 'log'), '-w', '-t', '60', 'start'], 90_000);
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    const out = err as { stderr?: Buffer; stdout?: Buffer };
    throw new Error(`postgres did not start: ${String(out.stderr ?? '')}${String(out.stdout ?? '')}`);
  }
  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      try {
        run(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop'], 30_000);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}
