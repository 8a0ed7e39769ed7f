/**
 * The few pieces of the PostgreSQL wire protocol the owner's socket server needs: splitting the
 * client's byte stream into messages, splitting the backend's answer, and building replies.
 */
export interface FrontendMessage {
  kind: 'ssl' | 'cancel' | 'startup' | 'message';
  /** The type byte of a regular message ('Q', 'P', 'B', 'S', 'X', …), '' otherwise. */
  type: string;
  /** The message as sent to the backend (rewritten when its statement name is renamed). */
  bytes: Buffer;
  /** The message's content after its header. */
  body: Buffer;
  /** How many bytes of the client's stream it took. */
  length: number;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

/** The next complete message at the start of `buf`, or null when more bytes are needed. */
export function frontendMessage(buf: Buffer, started: boolean): FrontendMessage | null {
  if (!started) {
    if (buf.length < 8) return null;
    const len = buf.readInt32BE(0);
    if (buf.length < len) return null;
    const code = buf.readInt32BE(4);
    const kind = code === SSL_REQUEST || code === GSSENC_REQUEST ? 'ssl' : code === CANCEL_REQUEST ? 'cancel' : 'startup';
    return { kind, type: '', bytes: buf.subarray(0, len), body: buf.subarray(8, len), length: len };
  }
  if (buf.length < 5) return null;
  const len = 1 + buf.readInt32BE(1);
  if (buf.length < len) return null;
  return { kind: 'message', type: String.fromCharCode(buf[0]!), bytes: buf.subarray(0, len), body: buf.subarray(5, len), length: len };
}

export interface BackendMessage {
  type: string;
  bytes: Uint8Array;
  /** ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' in a failed transaction. */
  status?: string;
  channel?: string;
  payload?: string;
}

export function* backendMessages(out: Uint8Array): Generator<BackendMessage> {
  const buf = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  let at = 0;
  while (at + 5 <= buf.length) {
    const type = String.fromCharCode(buf[at]!);
    const len = 1 + buf.readInt32BE(at + 1);
    const bytes = buf.subarray(at, at + len);
    if (type === 'Z') yield { type, bytes, status: String.fromCharCode(bytes[5]!) };
    else if (type === 'A') {
      const rest = bytes.subarray(9);
      const z = rest.indexOf(0);
      yield {
        type,
        bytes,
        channel: rest.subarray(0, z).toString('utf8'),
        payload: rest.subarray(z + 1, rest.indexOf(0, z + 1)).toString('utf8'),
      };
    } else yield { type, bytes };
    at += len;
  }
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string) => Buffer.from(`${s}\0`, 'utf8');

/** AuthenticationOk, the parameters a client expects, BackendKeyData and ReadyForQuery. */
export function startupReply(connectionId: number): Buffer {
  const int32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    return b;
  };
  const params: [string, string][] = [
    ['server_version', '18.0'],
    ['server_encoding', 'UTF8'],
    ['client_encoding', 'UTF8'],
    ['DateStyle', 'ISO, MDY'],
    ['integer_datetimes', 'on'],
    ['standard_conforming_strings', 'on'],
  ];
  return Buffer.concat([
    message('R', int32(0)),
    ...params.map(([k, v]) => message('S', Buffer.concat([cstr(k), cstr(v)]))),
    message('K', Buffer.concat([int32(connectionId), int32(0)])),
    message('Z', Buffer.from('I')),
  ]);
}

export function notification(pid: number, channel: string, payload: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(pid);
  return message('A', Buffer.concat([b, cstr(channel), cstr(payload)]));
}

export function queryMessage(sql: string): Buffer {
  return message('Q', cstr(sql));
}

/**
 * Gives the named prepared statements of connection `id` a name of their own (Parse, Bind,
 * Describe and Close of a statement); returns the new name for a Parse of a named statement.
 */
export function renameStatements(m: FrontendMessage, id: number): string | null {
  const rename = (name: Buffer) => (name.length === 0 ? name : Buffer.from(`c${id}_${name.toString('utf8')}`));
  const b = m.body;
  if (m.type === 'P') {
    const end = b.indexOf(0);
    const name = rename(b.subarray(0, end));
    if (end === 0) return null;
    m.bytes = message('P', Buffer.concat([name, b.subarray(end)]));
    return name.toString('utf8');
  }
  if (m.type === 'B') {
    const portalEnd = b.indexOf(0);
    const stmtEnd = b.indexOf(0, portalEnd + 1);
    if (stmtEnd === portalEnd + 1) return null;
    m.bytes = message('B', Buffer.concat([b.subarray(0, portalEnd + 1), rename(b.subarray(portalEnd + 1, stmtEnd)), b.subarray(stmtEnd)]));
    return null;
  }
  if ((m.type === 'D' || m.type === 'C') && b[0] === 0x53 /* 'S' */ && b[1] !== 0) {
    const end = b.indexOf(0, 1);
    m.bytes = message(m.type, Buffer.concat([b.subarray(0, 1), rename(b.subarray(1, end)), b.subarray(end)]));
  }
  return null;
}
