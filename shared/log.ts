/** Structured logs: one JSON object per line, with the `severity` field Cloud Logging reads. */
export type Severity = 'INFO' | 'WARNING' | 'ERROR';

export interface Logger {
  request(entry: Record<string, unknown>): void;
  error(entry: Record<string, unknown>): void;
}

export function createLogger(level: 'info' | 'error' | 'off', write: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Logger {
  return {
    request(entry) {
      if (level !== 'info') return;
      const status = typeof entry.status === 'number' ? entry.status : 200;
      // A caller may lower a 5xx to WARNING when it was load shed on purpose, not a failure.
      const severity: Severity = status >= 500 ? 'ERROR' : status >= 400 ? 'WARNING' : 'INFO';
      write(JSON.stringify({ severity, ...entry }));
    },
    error(entry) {
      if (level === 'off') return;
      write(JSON.stringify({ severity: 'ERROR', ...entry }));
    },
  };
}
