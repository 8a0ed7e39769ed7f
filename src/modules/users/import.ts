/**
 * Bringing users, doctors and their subscriptions over from the existing backend, keeping ids.
 * One record per user (the export format of docs/migration.md): the CLI (`users:import`, JSON or
 * CSV) and the admin API (`PUT /api/v2/admin/users/{id}`, `POST /api/v2/admin/users/import`) both
 * call `importUsers`. Each record is its own transaction: a bad record is reported with its error
 * and leaves nothing behind, the others still import. Running the same import twice changes
 * nothing; the rules of a user and a grant stay in `service.ts`.
 */
import { parse as parseCsv } from 'csv-parse/sync';
import type { Db, Role } from '../../db/types.js';
import { DomainError, invalid, pgErrorCode, type ErrorCode } from '../../lib/errors.js';
import { findPlan, importSubscription, upsertPlan, upsertUserKeepingId, type NewPlanInput } from './service.js';

/** A record as read from an export: any fields (unknown ones, e.g. `email`, are ignored). */
export type ImportRecord = Record<string, unknown>;

export interface ImportedUser {
  id: number;
  role: Role;
  name: string;
  country: string | null;
  timezone: string | undefined;
  subscriptions: ImportedSubscription[];
}

export interface ImportedSubscription {
  payment_reference: string;
  plan: string;
  remaining: { text: number; voice: number; video: number };
  starts_at: Date | null;
  expires_at: Date;
}

export interface RowResult {
  /** 1-based position of the record in the file or request. */
  row: number;
  id: number | null;
  status: 'created' | 'updated' | 'unchanged' | 'failed';
  subscriptions: { payment_reference: string; status: 'created' | 'unchanged' | 'skipped_expired' }[];
  error?: { error_code: ErrorCode; message: string };
}

export interface ImportReport {
  dry_run: boolean;
  total: number;
  created: number;
  updated: number;
  unchanged: number;
  failed: number;
  rows: RowResult[];
}

const ROLES: readonly Role[] = ['patient', 'doctor', 'admin'];
// C0 controls and DEL: PostgreSQL refuses NUL in text, and none belongs in a name or a reference.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

function text(rec: ImportRecord, field: string, opts: { max: number; required?: boolean }): string | null {
  const v = rec[field];
  if (v === undefined || v === null || v === '') {
    if (opts.required) throw invalid(`${field} is required`);
    return null;
  }
  if (typeof v !== 'string' && typeof v !== 'number') throw invalid(`${field} must be text`);
  const s = String(v).trim();
  if (CONTROL.test(s)) throw invalid(`${field} must not contain control characters`);
  if (s.length > opts.max) throw invalid(`${field} is longer than ${opts.max} characters`);
  if (!s && opts.required) throw invalid(`${field} must not be blank`);
  return s || null;
}

function wholeNumber(rec: ImportRecord, field: string, opts: { min: number }): number {
  const v = rec[field];
  const s = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : '';
  if (!/^(0|[1-9][0-9]{0,8})$/.test(s) || Number(s) < opts.min) {
    throw invalid(`${field} must be a whole number${opts.min > 0 ? ` from ${opts.min}` : ' from 0'} (got ${JSON.stringify(v ?? null)})`);
  }
  return Number(s);
}

function instant(rec: ImportRecord, field: string, required: boolean): Date | null {
  const s = text(rec, field, { max: 64, required });
  if (s === null) return null;
  // RFC 3339, or the `YYYY-MM-DD HH:MM:SS` a MySQL/PostgreSQL export writes (read as UTC).
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(Z|[+-]\d{2}:?\d{2})?$/.exec(s);
  const d = m ? new Date(`${m[1]}T${m[2]}${m[3] ?? 'Z'}`) : new Date(NaN);
  if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 2000 || d.getUTCFullYear() > 2200) {
    throw invalid(`${field} must be a date and time such as 2026-12-31T23:59:59Z (got "${s}")`);
  }
  return d;
}

/** The subscription fields of a record, or null when it carries none (no payment_reference). */
function subscriptionOf(rec: ImportRecord): ImportedSubscription | null {
  const reference = text(rec, 'payment_reference', { max: 200 });
  if (reference === null) return null;
  return {
    payment_reference: reference,
    plan: text(rec, 'plan', { max: 100, required: true })!,
    remaining: {
      text: wholeNumber(rec, 'text_remaining', { min: 0 }),
      voice: wholeNumber(rec, 'voice_remaining', { min: 0 }),
      video: wholeNumber(rec, 'video_remaining', { min: 0 }),
    },
    starts_at: instant(rec, 'starts_at', false),
    expires_at: instant(rec, 'expires_at', true)!,
  };
}

/**
 * Reads one export record: `id`; `role` or Laravel's `user_type`; `name`, or `first_name` +
 * `last_name`, or `display_name`; `country`; `timezone`; and either `subscriptions` (a list) or
 * one subscription's fields on the record itself (a CSV row).
 */
export function normalizeRecord(rec: ImportRecord): ImportedUser {
  if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) throw invalid('a record must be an object');
  const id = wholeNumber(rec, 'id', { min: 1 });
  const role = (text(rec, 'role', { max: 20 }) ?? text(rec, 'user_type', { max: 20 }))?.toLowerCase();
  if (!role || !ROLES.includes(role as Role)) throw invalid('role (or user_type) must be patient, doctor or admin');
  const full = [text(rec, 'first_name', { max: 100 }), text(rec, 'last_name', { max: 100 })].filter(Boolean).join(' ');
  const name = text(rec, 'name', { max: 200 }) ?? (full || null) ?? text(rec, 'display_name', { max: 200 });
  if (!name) throw invalid('name (or first_name and last_name) is required');
  if (name.length > 200) throw invalid('name is longer than 200 characters');
  const subs: ImportedSubscription[] = [];
  if (Array.isArray(rec['subscriptions'])) {
    for (const s of rec['subscriptions'] as unknown[]) {
      if (typeof s !== 'object' || s === null || Array.isArray(s)) throw invalid('each subscription must be an object');
      const sub = subscriptionOf(s as ImportRecord);
      if (!sub) throw invalid('each subscription needs a payment_reference');
      subs.push(sub);
    }
  } else if (rec['subscriptions'] !== undefined && rec['subscriptions'] !== null) {
    throw invalid('subscriptions must be a list');
  } else {
    const sub = subscriptionOf(rec);
    if (sub) subs.push(sub);
  }
  return {
    id,
    role: role as Role,
    name,
    country: text(rec, 'country', { max: 100 }),
    timezone: text(rec, 'timezone', { max: 64 }) ?? undefined,
    subscriptions: subs,
  };
}

class DryRunRollback extends Error {}

function errorOf(err: unknown): { error_code: ErrorCode; message: string } {
  if (err instanceof DomainError) return { error_code: err.code, message: err.message };
  const code = pgErrorCode(err);
  if (code && /^(22|23)/.test(code)) return { error_code: 'VALIDATION_FAILED', message: `the database refused the record (${code})` };
  throw err;
}

/**
 * Imports records one transaction each. `dryRun` runs every check and write, then rolls each
 * record back, so what it reports is what a real run would do. Subscriptions already expired at
 * `now` are skipped (they carry no usable credits).
 */
export async function importUsers(db: Db, records: unknown[], opts: { dryRun?: boolean; now: Date }): Promise<ImportReport> {
  const rows: RowResult[] = [];
  for (const [i, rec] of records.entries()) {
    const result: RowResult = { row: i + 1, id: null, status: 'failed', subscriptions: [] };
    rows.push(result);
    try {
      const user = normalizeRecord(rec as ImportRecord);
      result.id = user.id;
      const done = await db
        .transaction()
        .execute(async (trx) => {
          const { outcome } = await upsertUserKeepingId(trx, user);
          const subs: RowResult['subscriptions'] = [];
          for (const s of user.subscriptions) {
            if (s.expires_at <= opts.now) {
              subs.push({ payment_reference: s.payment_reference, status: 'skipped_expired' });
              continue;
            }
            const plan = await findPlan(trx, s.plan);
            if (!plan) throw invalid(`plan "${s.plan}" does not exist (create it first: see docs/migration.md)`);
            const starts = s.starts_at && s.starts_at < s.expires_at ? s.starts_at : opts.now;
            const { created } = await importSubscription(trx, {
              user_id: user.id,
              plan_id: plan.id,
              payment_reference: s.payment_reference,
              remaining: s.remaining,
              starts_at: starts,
              expires_at: s.expires_at,
            });
            subs.push({ payment_reference: s.payment_reference, status: created ? 'created' : 'unchanged' });
          }
          if (opts.dryRun) throw new DryRunRollback(JSON.stringify({ outcome, subs }));
          return { outcome, subs };
        })
        .catch((err: unknown) => {
          if (err instanceof DryRunRollback)
            return JSON.parse(err.message) as { outcome: RowResult['status']; subs: RowResult['subscriptions'] };
          throw err;
        });
      result.status = done.outcome;
      result.subscriptions = done.subs;
    } catch (err) {
      result.error = errorOf(err);
      result.status = 'failed';
      result.subscriptions = [];
    }
  }
  const count = (s: RowResult['status']) => rows.filter((r) => r.status === s).length;
  return {
    dry_run: Boolean(opts.dryRun),
    total: rows.length,
    created: count('created'),
    updated: count('updated'),
    unchanged: count('unchanged'),
    failed: count('failed'),
    rows,
  };
}

/** Plans named by imported subscriptions, created when missing (an existing plan is left as is). */
export async function importPlans(db: Db, plans: unknown[]): Promise<void> {
  for (const [i, p] of plans.entries()) {
    if (typeof p !== 'object' || p === null) throw invalid(`plans[${i}] must be an object`);
    const rec = p as ImportRecord;
    const currency = text(rec, 'currency', { max: 3 }) ?? 'USD';
    if (currency !== 'USD' && currency !== 'MWK') throw invalid(`plans[${i}].currency must be USD or MWK`);
    const plan: NewPlanInput = {
      name: text(rec, 'name', { max: 100, required: true })!,
      text_credits: wholeNumber(rec, 'text_credits', { min: 0 }),
      voice_credits: wholeNumber(rec, 'voice_credits', { min: 0 }),
      video_credits: wholeNumber(rec, 'video_credits', { min: 0 }),
      validity_days: wholeNumber(rec, 'validity_days', { min: 1 }),
      price_minor: rec['price_minor'] === undefined ? 0 : wholeNumber(rec, 'price_minor', { min: 0 }),
      currency,
    };
    await upsertPlan(db, plan);
  }
}

/** Parses an export file: JSON (`[…]` or `{ "plans": […], "users": […] }`) or CSV with a header row. */
export function parseExport(content: string, format: 'json' | 'csv'): { plans: unknown[]; users: unknown[] } {
  if (format === 'csv') {
    const users = parseCsv(content, { columns: true, skip_empty_lines: true, trim: true, bom: true }) as ImportRecord[];
    return { plans: [], users };
  }
  const doc = JSON.parse(content) as unknown;
  if (Array.isArray(doc)) return { plans: [], users: doc };
  if (typeof doc === 'object' && doc !== null && Array.isArray((doc as { users?: unknown }).users)) {
    const plans = (doc as { plans?: unknown }).plans;
    if (plans !== undefined && !Array.isArray(plans)) throw invalid('"plans" must be a list');
    return { plans: (plans as unknown[] | undefined) ?? [], users: (doc as { users: unknown[] }).users };
  }
  throw invalid('a JSON export is a list of users or an object with a "users" list');
}
