/**
 * A vitest setup file: after each test file's own hooks (setup-file hooks run outermost), removes
 * the temporary directories its tests made with `tempDir` (data directories, blob stores).
 */
import { afterAll } from 'vitest';
import { removeTempDirs } from './server.js';

afterAll(() => removeTempDirs());
