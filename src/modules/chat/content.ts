/**
 * What a chat message may contain. Pure: no IO.
 *
 * The rule (SPEC §2.6: HTML, scripts and links are rejected with 400 CONTENT_BLOCKED; newlines
 * are kept). Bodies are stored exactly as sent — never rewritten — so whatever passes here is
 * what the other participant reads. A body is blocked when it contains:
 *
 * - an HTML tag: `<` + optional `/` + a letter-led name + attributes + `>` (`<b>`, `</p>`,
 *   `<img src=x onerror=…>`), a comment or declaration (`<!--`, `<!doctype`), a processing
 *   instruction (`<?`), or the opening of an active element even without its `>` (`<script`,
 *   `<iframe`, `<svg` …). `a<b`, `I <3 you` and `x < y > z` are not tags;
 * - a script URL: `javascript:`, `vbscript:`, `data:<type>/<subtype>` (`data:text/html,…`);
 * - a link: any `scheme://`, `www.`, `mailto:`, a dotted IPv4 address followed by `/` or a port,
 *   or a bare domain under an unambiguous TLD (`example.com`, `bit.ly/x`, `site.co.uk`).
 *
 * Unlike the original (reference §4.6) this does NOT block `ok.bye`, `one = 1`, `2.5mg`, `e.g.`
 * or `Dr.Smith`: bare domains only count under TLDs that are not also English words, and
 * `on…=` only matters inside a tag, which is blocked anyway.
 *
 * Separately, control characters other than tab, newline and carriage return are refused as
 * VALIDATION_FAILED (PostgreSQL cannot store NUL in text, and the others are never typed).
 */

/** Why a body was blocked; returned to the client as `reasons`. */
export type ContentReason = 'html' | 'script' | 'link';

export type ContentCheck = { ok: true } | { ok: false; kind: 'blocked'; reasons: ContentReason[] } | { ok: false; kind: 'invalid'; message: string };

const HTML_TAG = /<\/?[a-z][a-z0-9-]*(?:\s[^<>]*)?\/?>/i;
const HTML_MARKUP = /<!--|<!doctype|<!\[cdata\[|<\?/i;
const ACTIVE_ELEMENT = /<\s*\/?\s*(?:script|iframe|frame|frameset|object|embed|svg|math|style|link|meta|base|form|img|video|audio|source|body|html|applet)\b/i;
const SCRIPT_URL = /\b(?:javascript|vbscript|livescript)\s*:|\bdata:[a-z]+\/[a-z0-9.+-]+[;,]/i;
const SCHEME_URL = /\b[a-z][a-z0-9+.-]{1,20}:\/\/\S/i;
const WWW = /\bwww\.[a-z0-9-]/i;
const MAILTO = /\bmailto:/i;
const IP_URL = /\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5}|\/)/;

// TLDs that are not also English words, so a missing space after a full stop (`do.it`,
// `I will.Work`, `ok.bye`) is not a link; `example.com`, `bit.ly` and `x.co.uk` are.
const TLDS = [
  'com', 'net', 'org', 'info', 'biz', 'io', 'co', 'ly', 'gl', 'app', 'dev', 'xyz', 'online', 'website',
  'tk', 'ml', 'ga', 'cf', 'gq', 'ru', 'cn', 'uk', 'de', 'fr', 'nl', 'za', 'ng', 'ke', 'mw', 'tz', 'ug',
  'zm', 'zw', 'gh', 'rw', 'eu', 'gov', 'edu', 'tv', 'cc', 'ws', 'su', 'icu', 'ai', 'gg',
];
const BARE_DOMAIN = new RegExp(`(?:^|[^a-z0-9@.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\\.)+(?:${TLDS.join('|')})(?![a-z0-9-])`, 'i');

// C0 controls except \t \n \r, DEL, and C1 controls.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

// A UTF-16 surrogate without its partner: not a character, and not storable as UTF-8 (the driver
// would silently turn it into U+FFFD, so the stored text would differ from what was sent).
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Text that can be stored exactly: no control characters but tab/newline/CR, valid Unicode. */
export function isStorableText(s: string): boolean {
  return !CONTROL.test(s) && !LONE_SURROGATE.test(s);
}

/** Checks a message body (any type: text, or the caption of an image / voice message). */
export function checkBody(body: string): ContentCheck {
  if (CONTROL.test(body)) return { ok: false, kind: 'invalid', message: 'The message contains control characters' };
  if (LONE_SURROGATE.test(body)) return { ok: false, kind: 'invalid', message: 'The message is not valid Unicode text' };
  const reasons: ContentReason[] = [];
  if (HTML_TAG.test(body) || HTML_MARKUP.test(body) || ACTIVE_ELEMENT.test(body)) reasons.push('html');
  if (SCRIPT_URL.test(body)) reasons.push('script');
  if (SCHEME_URL.test(body) || WWW.test(body) || MAILTO.test(body) || IP_URL.test(body) || BARE_DOMAIN.test(body)) reasons.push('link');
  return reasons.length === 0 ? { ok: true } : { ok: false, kind: 'blocked', reasons };
}

/**
 * Media URLs of image and voice messages: absolute `https://` (uploads live on object storage)
 * or a same-origin path (`/api/images/…`, what the old upload endpoint returned). Nothing else
 * — in particular no `javascript:` or `data:`.
 */
export function isAcceptableMediaUrl(url: string): boolean {
  if (!isStorableText(url) || /\s/.test(url)) return false;
  if (url.startsWith('/') && !url.startsWith('//')) return true;
  try {
    const u = new URL(url);
    return u.protocol === 'https:' && u.hostname.length > 0;
  } catch {
    return false;
  }
}

/**
 * Reactions: one short emoji-like token (1–10 code points, the old clients' limit), no
 * whitespace, no markup, no control characters.
 */
export function isAcceptableReaction(r: string): boolean {
  const n = [...r].length;
  if (n < 1 || n > 10) return false;
  return !/[\s<>&"'`\\/]/.test(r) && isStorableText(r);
}
