/** Where the reference topology lives: the default topology of every Meridian command and test. */
import * as path from 'node:path';

// Compiled code runs from `dist/src/`, tests (ts-node) from `src/`: both resolve to the package root.
const packageRoot =
  path.basename(path.dirname(__dirname)) === 'dist'
    ? path.resolve(__dirname, '..', '..')
    : path.resolve(__dirname, '..');

/**
 * Absolute path of `topology/reference.yaml`: 4 DCs (bj-a, bj-b, sh-a, sh-b), 2 clouds, 4 edge
 * sites, classes voice, video, signaling, api and sync. See the file's comments for the sources.
 */
export const REFERENCE_TOPOLOGY_PATH: string = path.join(packageRoot, 'reference.yaml');
