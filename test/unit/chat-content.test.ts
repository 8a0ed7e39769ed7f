import { describe, expect, it } from 'vitest';
import { checkBody, isAcceptableMediaUrl, isAcceptableReaction } from '../../src/modules/chat/content.js';

describe('checkBody (the content rule)', () => {
  it.each([
    ['<p>', ['html']],
    ['</div>', ['html']],
    ['<a href="x">y</a>', ['html']],
    ['<svg onload=alert(1)', ['html']],
    ['< script >', ['html']],
    ['<?xml version="1.0"?>', ['html']],
    ['<!DOCTYPE html>', ['html']],
    ['JAVASCRIPT:alert(1)', ['script']],
    ['vbscript:msgbox', ['script']],
    ['data:image/svg+xml;base64,AAAA', ['script']],
    ['https://example.org', ['link']],
    ['HTTP://EXAMPLE.ORG', ['link']],
    ['whatsapp://send?phone=1', ['link']],
    ['WWW.example.net', ['link']],
    ['contact me at mailto:x', ['link']],
    ['my site: clinic-name.co.uk/about', ['link']],
    ['192.168.0.1/admin', ['link']],
    ['<a href="https://x.com">x</a>', ['html', 'link']],
    // Links the hand-kept TLD list missed.
    ['log in at evil.me/login', ['link']],
    ['refund: mpamba-refund.top/claim', ['link']],
    ['[click](bank-secure.shop/x)', ['link']],
    ['//evil.top/x', ['link']],
    ['https:evil.top', ['link']],
    ['evil。com', ['link']],
    ['evil．com/x', ['link']],
    ['write to help@clinic-payments.com', ['link']],
    ['пример.рф', ['link']],
    ['www.example.africa', ['link']],
  ])('blocks %j', (body, reasons) => {
    expect(checkBody(body)).toEqual({ ok: false, kind: 'blocked', reasons });
  });

  it.each([
    'ok.bye',
    'one = 1, onload = fine',
    'I <3 you',
    '5 < 6 and 7 > 2',
    'x<y',
    'e.g. i.e. etc.',
    'Take 2.5mg at 8.30pm',
    'so.it goes, do.it now, go.to bed, is.me',
    'version 1.2.3.4 of the app',
    'email: name(at)domain',
    '',
    'line\nbreak\r\nand\ttab',
    'emoji 😀👍🏽 and 中文',
    'take 2.5 mg twice a day',
    'Dr. Banda will see you',
    'e.g. paracetamol',
    'see you at 10.30am',
    'BP 120/80, temp 37.5C',
    'Mr.Phiri and Mrs.Banda',
  ])('allows %j', (body) => {
    expect(checkBody(body)).toEqual({ ok: true });
  });

  it('refuses control characters other than tab / newline / carriage return', () => {
    for (const c of ['\u0000', '\u0007', '\u001b', '\u007f', '\u0085']) {
      expect(checkBody(`a${c}b`)).toMatchObject({ ok: false, kind: 'invalid' });
    }
  });
});

describe('media URLs and reactions', () => {
  it('accepts https and same-origin paths only', () => {
    expect(isAcceptableMediaUrl('https://cdn.example.com/a.jpg')).toBe(true);
    expect(isAcceptableMediaUrl('/api/images/chat_images/a.jpg')).toBe(true);
    for (const bad of [
      'http://x.example/a.jpg',
      'javascript:alert(1)',
      'data:image/png;base64,AA',
      '//evil.example/a',
      'https://',
      'ftp://x/y',
      'https://x.example/a b',
    ]) {
      expect(isAcceptableMediaUrl(bad), bad).toBe(false);
    }
  });

  it('accepts one short emoji-like token', () => {
    for (const ok of ['👍', '❤️', '👍🏽', '+1', 'ok']) expect(isAcceptableReaction(ok), ok).toBe(true);
    for (const bad of ['', ' ', 'two words', '<b>', 'a'.repeat(11), 'x\u0000']) expect(isAcceptableReaction(bad), bad).toBe(false);
  });
});
