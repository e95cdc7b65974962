/**
 * Decorating a port in a test (to count, delay, fail or observe its calls) without hand-rolling a
 * Proxy each time.
 *
 * - `wrap(port, { method: (real, ...args) => ... })` replaces the named methods; each override gets
 *   the original method (bound to the port) first, then the call's arguments. Every other member
 *   passes through, methods bound to the port, so the wrapper behaves as the port itself.
 * - `wrapAll(port, (name, real, args) => ...)` puts one function around every method (except the
 *   names in `skip`), for decorators that treat all calls alike (yield a turn, inject a crash).
 */

// biome-ignore lint/suspicious/noExplicitAny: a method of any signature
type Method = (...args: any[]) => any;

export type Overrides<T> = {
  [K in keyof T]?: T[K] extends Method ? (real: T[K], ...args: Parameters<T[K]>) => ReturnType<T[K]> : never;
};

export function wrap<T extends object>(port: T, overrides: Overrides<T>): T {
  const table = overrides as Record<PropertyKey, Method | undefined>;
  return new Proxy(port, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      const real = v.bind(target);
      const override = table[prop];
      return override ? (...args: unknown[]) => override(real, ...args) : real;
    },
  });
}

export function wrapAll<T extends object>(port: T, around: (name: string, real: Method, args: unknown[]) => unknown, skip: readonly string[] = []): T {
  return new Proxy(port, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      const real = v.bind(target);
      if (typeof prop !== 'string' || skip.includes(prop)) return real;
      return (...args: unknown[]) => around(prop, real, args);
    },
  });
}
