/** The periodic jobs the worker runs. One file per job; add it to this list. */
import type { JobDefinition } from './scheduler.js';

export const JOBS: JobDefinition[] = [];
