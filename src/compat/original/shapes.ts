/**
 * Shapes of the original client contract shared by its route files: numeric appointment
 * statuses, wall-clock dates and times in a zone, the person objects the app embeds, Laravel's
 * paginator, the `{success, message, data}` envelope, and validation errors worded for people.
 *
 * Pure mapping only: no rule of the core is decided here.
 */
import { Type, type ObjectOptions, type TSchema } from '@sinclair/typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { AppointmentStatus, User } from '../../db/types.js';
import { sendProblem } from '../../plugins/errors.js';

// ---------------------------------------------------------------------------------------------
// Route metadata

/** Every route of the original contract: its own OpenAPI tag, marked deprecated. */
export const original = (summary: string, description?: string) => ({
  tags: ['original'],
  deprecated: true,
  summary,
  ...(description ? { description } : {}),
});

// ---------------------------------------------------------------------------------------------
// Appointment statuses

/**
 * The app's numeric statuses (`backend/app/Models/Appointment.php`): 0 pending, 1 confirmed,
 * 2 cancelled/rejected, 3 completed, 7 in progress (4–6 were reschedule states sessiongate does
 * not have). The core's two other final states have no number of their own:
 * - `expired` (never confirmed before its time) → 2: the app shows it as cancelled, which is
 *   what happened to the booking, and offers nothing to do with it;
 * - `missed` (the session expired with no consultation, or a confirmed booking was never
 *   started) → 2 as well: 3 would tell both sides a consultation took place (and the doctor's
 *   "confirmed" list keeps 1 and 3), 1 would invite them to start it.
 * `status_name` carries the core's word beside the number, so nothing is lost.
 */
export const APP_STATUS: Record<AppointmentStatus, number> = {
  pending: 0,
  confirmed: 1,
  cancelled: 2,
  expired: 2,
  missed: 2,
  completed: 3,
  in_progress: 7,
};

export const appStatus = (s: AppointmentStatus): number => APP_STATUS[s];

// ---------------------------------------------------------------------------------------------
// Dates and times in a zone

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** A valid IANA zone, else UTC (a stored zone is validated on write; this is a safety net). */
export function safeZone(tz: string | null | undefined): string {
  if (!tz) return 'UTC';
  try {
    formatterFor(tz);
    return tz;
  } catch {
    return 'UTC';
  }
}

/** The wall clock of `instant` in `timeZone`: `{date: "YYYY-MM-DD", time: "HH:mm:ss"}`. */
export function wallClock(instant: Date, timeZone: string): { date: string; time: string } {
  const parts: Record<string, string> = {};
  for (const p of formatterFor(safeZone(timeZone)).formatToParts(instant)) parts[p.type] = p.value;
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}:${parts.second}` };
}

/** Offset of `timeZone` from UTC at `t` (ms since epoch), in ms. */
function offsetAt(t: number, timeZone: string): number {
  const { date, time } = wallClock(new Date(t), timeZone);
  const [y, mo, d] = date.split('-').map(Number) as [number, number, number];
  const [h, mi, s] = time.split(':').map(Number) as [number, number, number];
  return Date.UTC(y, mo - 1, d, h, mi, s) - Math.floor(t / 1000) * 1000;
}

export const DATE_PATTERN = '^[0-9]{4}-[0-9]{2}-[0-9]{2}$';
/** `H:mm`, `HH:mm` or `HH:mm:ss` (the app sends `14:30`; Laravel returned `14:30:00`). */
export const TIME_PATTERN = '^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$';

/**
 * The instant a wall-clock date and time name in `timeZone`, or `null` when they name none: an
 * impossible date (2025-02-30), or a time skipped by a daylight-saving change.
 */
export function zonedInstant(date: string, time: string, timeZone: string): Date | null {
  const dm = new RegExp(DATE_PATTERN).exec(date);
  const tm = new RegExp(TIME_PATTERN).exec(time);
  if (!dm || !tm) return null;
  const [y, mo, d] = date.split('-').map(Number) as [number, number, number];
  const [h, mi, s = 0] = time.split(':').map(Number) as [number, number, number?];
  const guess = Date.UTC(y, mo - 1, d, h, mi, s);
  const check = new Date(guess);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d) return null;
  // Two passes find the offset in force at the instant itself (it may differ from the guess's
  // across a daylight-saving change); a wall clock that maps back unchanged is the answer.
  const wanted = `${date} ${String(h).padStart(2, '0')}:${String(mi).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
  const first = guess - offsetAt(guess, timeZone);
  for (const t of [guess - offsetAt(first, timeZone), first]) {
    const w = wallClock(new Date(t), timeZone);
    if (`${w.date} ${w.time}` === wanted) return new Date(t);
  }
  return null;
}

/** `HH:mm` of `instant` in `timeZone`. */
export const hourMinute = (instant: Date, timeZone: string) => wallClock(instant, timeZone).time.slice(0, 5);

// ---------------------------------------------------------------------------------------------
// People

/**
 * sessiongate keeps one `name` per user; the app reads first and last names. The first word is
 * the first name, the rest the last name ("Grace Banda" → Grace / Banda; "Chikondi" → Chikondi / "").
 */
export function splitName(name: string): { first_name: string; last_name: string } {
  const [first = '', ...rest] = name.trim().split(/\s+/);
  return { first_name: first, last_name: rest.join(' ') };
}

export const PersonOut = Type.Object({
  id: Type.Integer(),
  first_name: Type.String(),
  last_name: Type.String(),
  display_name: Type.String(),
  gender: Type.Null(),
  country: Type.Union([Type.String(), Type.Null()]),
  city: Type.Null(),
  date_of_birth: Type.Null(),
  profile_picture: Type.Null(),
  profile_picture_url: Type.Null(),
});

/**
 * The person object the app embeds (`doctor{}`, `patient{}`). sessiongate stores no gender,
 * city, birth date or picture: those are `null` (the app shows its placeholder avatar).
 */
export function person(u: (Pick<User, 'id' | 'name'> & Partial<Pick<User, 'country'>>) | undefined, id: number) {
  const name = u?.name ?? 'Unknown user';
  return {
    id,
    ...splitName(name),
    display_name: name,
    gender: null,
    country: u?.country ?? null,
    city: null,
    date_of_birth: null,
    profile_picture: null,
    profile_picture_url: null,
  };
}

/** The short person of the chat and text-session screens (their headers read `display_name`). */
export const ChatPerson = Type.Object(
  {
    id: Type.Integer(),
    first_name: Type.String(),
    last_name: Type.String(),
    display_name: Type.String(),
    profile_picture_url: Type.Null(),
    profile_picture: Type.Null(),
  },
  { additionalProperties: true },
);

/** {@link person} as a chat header shows it: a doctor's name with "Dr. " before it. */
export function chatPerson(u: Pick<User, 'id' | 'name' | 'role'> | undefined) {
  const p = person(u, u?.id ?? 0);
  return {
    id: p.id,
    first_name: p.first_name,
    last_name: p.last_name,
    display_name: u?.role === 'doctor' ? `Dr. ${p.display_name}` : p.display_name,
    profile_picture_url: p.profile_picture_url,
    profile_picture: p.profile_picture,
  };
}

// ---------------------------------------------------------------------------------------------
// Envelopes

/** Options of an envelope whose object may carry more than its schema declares (serialised as is). */
export const OPEN: ObjectOptions = { additionalProperties: true };

/** A body or object whose unknown fields the app relies on being ignored or kept. */
export const OpenObject = Type.Object({}, { additionalProperties: true });
/** A body the app may send empty, as `null`, or with fields nobody reads. */
export const AnyBody = Type.Union([OpenObject, Type.Null()]);
/** A path id as the app sends it (a number, `text_session_N`, …); the route's look-up decides. */
export const PathId = Type.Object({ id: Type.String({ maxLength: 64 }) });

/** `{success: true, message?, data}`; `options` of the envelope object (e.g. {@link OPEN}). */
export const Envelope = <T extends TSchema>(data: T, options: ObjectOptions = {}) =>
  Type.Object({ success: Type.Literal(true), message: Type.Optional(Type.String()), data }, options);

/** Laravel's length-aware paginator; the app reads `data.data ‖ data`. */
export const Paginator = <T extends TSchema>(item: T) =>
  Type.Object({
    current_page: Type.Integer(),
    data: Type.Array(item),
    first_page_url: Type.Union([Type.String(), Type.Null()]),
    from: Type.Union([Type.Integer(), Type.Null()]),
    last_page: Type.Integer(),
    next_page_url: Type.Union([Type.String(), Type.Null()]),
    path: Type.String(),
    per_page: Type.Integer(),
    prev_page_url: Type.Union([Type.String(), Type.Null()]),
    to: Type.Union([Type.Integer(), Type.Null()]),
    total: Type.Integer(),
  });

/** Query of a paged list: `page` (default 1) and `per_page` (1–100), as the app sends them. */
export const PageQuery = Type.Object({
  page: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,5}$' })),
  per_page: Type.Optional(Type.String({ pattern: '^(100|[1-9][0-9]?)$' })),
});

export function pageOf(q: { page?: string; per_page?: string }, defaultPerPage: number) {
  return { page: Number(q.page ?? 1), perPage: Number(q.per_page ?? defaultPerPage) };
}

export function paginator<T>(path: string, rows: T[], page: { page: number; perPage: number }, total: number) {
  const last = Math.max(1, Math.ceil(total / page.perPage));
  const url = (p: number) => `${path}?page=${p}`;
  const from = rows.length ? (page.page - 1) * page.perPage + 1 : null;
  return {
    current_page: page.page,
    data: rows,
    first_page_url: url(1),
    from,
    last_page: last,
    next_page_url: page.page < last ? url(page.page + 1) : null,
    path,
    per_page: page.perPage,
    prev_page_url: page.page > 1 ? url(page.page - 1) : null,
    to: from === null ? null : from + rows.length - 1,
    total,
  };
}

// ---------------------------------------------------------------------------------------------
// Errors

/** How the app's fields are named to the person reading the message. */
const FIELD_NAMES: Record<string, string> = {
  doctor_id: 'doctor',
  appointment_date: 'appointment date (YYYY-MM-DD)',
  appointment_time: 'appointment time (HH:MM)',
  appointment_type: 'consultation type (text, voice or video)',
  user_timezone: 'time zone',
  reason: 'reason (up to 500 characters)',
  status: 'status',
  date: 'date (YYYY-MM-DD)',
  id: 'appointment',
  page: 'page',
  per_page: 'page size',
};

function humanValidation(err: FastifyError): string {
  const v = err.validation?.[0];
  const missing = v?.params && 'missingProperty' in v.params ? String(v.params.missingProperty) : undefined;
  const path = (v?.instancePath ?? '').split('/').filter(Boolean)[0];
  const field = missing ?? path;
  const name = field ? (FIELD_NAMES[field] ?? field.replaceAll('_', ' ')) : undefined;
  if (missing) return `Please provide the ${name}.`;
  if (name) return `The ${name} is not valid. Please check it and try again.`;
  return 'Some of the information sent is not valid. Please check it and try again.';
}

/**
 * Error handler of the original contract's route files: schema failures get a message a patient
 * or doctor understands (the app shows `message`); everything else goes to the application's
 * handler (throwing here hands the error to the parent handler).
 */
export function originalErrorHandler(err: FastifyError, _req: FastifyRequest, reply: FastifyReply) {
  if (!err.validation) throw err;
  const context = err.validationContext ?? 'body';
  return sendProblem(reply, 'VALIDATION_FAILED', humanValidation(err), {
    errors: err.validation.map((v) => ({ location: context, path: v.instancePath || '/', message: v.message ?? 'invalid' })),
  });
}
