/**
 * What a chat message may contain. Pure: no IO.
 *
 * The rule (HTML, scripts and links are rejected with 400 CONTENT_BLOCKED; newlines
 * are kept). Bodies are stored exactly as sent — never rewritten — so whatever passes here is
 * what the other participant reads. A body is blocked when it contains:
 *
 * - an HTML tag: `<` + optional `/` + a letter-led name + attributes + `>` (`<b>`, `</p>`,
 *   `<img src=x onerror=…>`), a comment or declaration (`<!--`, `<!doctype`), a processing
 *   instruction (`<?`), or the opening of an active element even without its `>` (`<script`,
 *   `<iframe`, `<svg` …). `a<b`, `I <3 you` and `x < y > z` are not tags;
 * - a script URL: `javascript:`, `vbscript:`, `data:<type>/<subtype>` (`data:text/html,…`);
 * - a link: any `scheme://`, `mailto:`, a dotted IPv4 address followed by `/` or a port, or what
 *   linkify-it recognises under any IANA TLD (`www.x`, `example.com`, `evil.me/login`,
 *   `//evil.top/x`, `name@mail.com`), see `hasLink`.
 *
 * Unlike the original system, this does NOT block `ok.bye`, `one = 1`, `2.5mg`, `e.g.`
 * or `Dr.Smith`: a bare `word.tld` under a TLD that is also a short English word is a missing
 * space, and `on…=` only matters inside a tag, which is blocked anyway.
 *
 * Separately, control characters other than tab, newline and carriage return are refused as
 * VALIDATION_FAILED (PostgreSQL cannot store NUL in text, and the others are never typed).
 */

import { createRequire } from 'node:module';
import { LinkifyIt } from 'linkify-it';

// `tlds` is a JSON module: loaded with require, which compiled ESM (`npm start`) accepts without an import attribute.
const tlds = createRequire(import.meta.url)('tlds') as string[];

/** Why a body was blocked; returned to the client as `reasons`. */
export type ContentReason = 'html' | 'script' | 'link';

export type ContentCheck =
  { ok: true } | { ok: false; kind: 'blocked'; reasons: ContentReason[] } | { ok: false; kind: 'invalid'; message: string };

const HTML_TAG = /<\/?[a-z][a-z0-9-]*(?:\s[^<>]*)?\/?>/i;
const HTML_MARKUP = /<!--|<!doctype|<!\[cdata\[|<\?/i;
const ACTIVE_ELEMENT =
  /<\s*\/?\s*(?:script|iframe|frame|frameset|object|embed|svg|math|style|link|meta|base|form|img|video|audio|source|body|html|applet)\b/i;
const SCRIPT_URL = /\b(?:javascript|vbscript|livescript)\s*:|\bdata:[a-z]+\/[a-z0-9.+-]+[;,]/i;
const SCHEME_URL = /\b[a-z][a-z0-9+.-]{1,20}:\/\/\S/i;
const MAILTO = /\bmailto:/i;
// `https:evil.top` (no slashes): browsers and chat apps still open it.
const WEB_SCHEME = /\b(?:https?|ftp):\S/i;
const IP_URL = /\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5}|\/)/;

/**
 * Links are found by linkify-it (maintained; full Unicode) with the complete IANA TLD list from
 * `tlds`, fuzzy links (`evil.top`, `bank-secure.shop/x`) and fuzzy e-mails included. Text is
 * NFKC-normalised and the ideographic full stops read as dots first (`evil。com`).
 */
const linkify = new LinkifyIt({ fuzzyLink: true, fuzzyEmail: true }).tlds(tlds, false);

/**
 * TLDs that are also short English words. A bare `word.tld` under one of them, with nothing
 * after it, is a missing space (`do.it now`, `is.me`), not a link; with a path, port or query
 * (`evil.me/login`) it is a link. Every other TLD counts as a link even bare.
 */
const WORD_TLDS = new Set([
  'it',
  'to',
  'me',
  'is',
  'in',
  'at',
  'be',
  'so',
  'do',
  'no',
  'us',
  'am',
  'my',
  'by',
  'as',
  'an',
  'id',
  'la',
  'tv',
  'ok',
]);

function hasLink(body: string): boolean {
  if (SCHEME_URL.test(body) || WEB_SCHEME.test(body) || MAILTO.test(body) || IP_URL.test(body)) return true;
  const text = body.normalize('NFKC').replace(/[\u3002\uff0e\uff61]/g, '.');
  // `www.` followed by a name is an address even before its TLD is typed (linkify wants one).
  if (/\bwww\.[\p{L}\p{N}-]/iu.test(text)) return true;
  for (const m of linkify.match(text) ?? []) {
    // A scheme (`https:`, `//`, `mailto:`) or an e-mail address: always a link.
    if (m.schema !== '' || m.url.startsWith('mailto:')) return true;
    const rest = m.raw.replace(/^www\./i, 'www.');
    if (/^www\./i.test(rest) || /[/:?#]/.test(rest)) return true;
    const tld = rest.replace(/\.$/, '').split('.').pop()!.toLowerCase();
    if (!WORD_TLDS.has(tld)) return true;
  }
  return false;
}

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
  if (hasLink(body)) reasons.push('link');
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
