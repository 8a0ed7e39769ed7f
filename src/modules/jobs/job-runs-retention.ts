/**
 * Keeps job_runs small: auto-start and the legacy triggers record every run, idle ones included
 * (2,880 rows a day per worker at a 30 s interval). Idle runs older than 7 days carry no
 * information the monitor or rollout:status read (they look at 24 h and 7 d windows of runs
 * that processed something), so they are deleted in bounded chunks. Runs that did anything,
 * failed or were skipped are kept.
 */
import { sql } from 'kysely';
import type { JobDefinition } from './scheduler.js';

export const JOB_RUNS_RETENTION_JOB = 'job-runs:retention';
export const IDLE_RUN_RETENTION_DAYS = 7;

export const jobRunsRetentionJob: JobDefinition = {
  name: JOB_RUNS_RETENTION_JOB,
  intervalSeconds: () => 3600,
  recordIdleRuns: false,
  async run(ctx) {
    const r = await sql`
      delete from job_runs
       where id in (select id from job_runs
                     where started_at < now() - make_interval(days => ${IDLE_RUN_RETENTION_DAYS})
                       and status = 'succeeded' and selected = 0 and created = 0 and skipped = 0 and failed = 0
                     limit 10000)`.execute(ctx.db);
    return { details: { deleted: Number(r.numAffectedRows ?? 0) } };
  },
};
