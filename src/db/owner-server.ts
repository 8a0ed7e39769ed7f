/**
 * The owner of an embedded data directory serves it to the other processes of the machine: a
 * PostgreSQL wire-protocol server on a Unix socket in front of the one PGlite connection.
 *
 * PGlite is a single session, so the server makes it look like many:
 * - Exclusive use: a client connection takes the database lock (shared with this process's own
 *   queries) at its first message and keeps it until the backend reports ReadyForQuery *idle* —
 *   through an extended-protocol exchange (Parse…Sync) or a whole transaction. No statement of
 *   another connection runs inside it. A holder that goes quiet for HOLD_TIMEOUT_MS, or whose
 *   socket closes, is rolled back and dropped.
 * - Startup is answered here (no per-connection settings reach the shared session).
 * - Named prepared statements are renamed per connection (`c<id>_<name>`), so two connections
 *   preparing the same name do not collide; they are deallocated when the connection ends.
 * - LISTEN/UNLISTEN are kept per connection here (the backend listens once per channel);
 *   notifications are taken out of whichever output carries them and sent to every connection
 *   listening on their channel.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { EmbeddedHost } from './pglite-open.js';
import {
  backendMessages,
  frontendMessage,
  notification,
  queryMessage,
  startupReply,
  renameStatements,
  type FrontendMessage,
} from './wire.js';

/** A connection holding the database without sending anything for this long is dropped. */
export const HOLD_TIMEOUT_MS = 30_000;
/** Unix socket paths are limited to ~107 bytes. */
const MAX_SOCKET_PATH = 100;

/** Where the socket for `dataDir` lives: inside it, or under the temp dir when that path is too long. */
export function socketDirFor(dataDir: string): string {
  const inside = resolve(dataDir);
  if (join(inside, '.s.PGSQL.5432').length <= MAX_SOCKET_PATH) return inside;
  return join(tmpdir(), `sessiongate-${createHash('sha256').update(inside).digest('hex').slice(0, 16)}`);
}

export const socketPathIn = (dir: string) => join(dir, '.s.PGSQL.5432');

class ClientConnection {
  private buffer: Buffer = Buffer.alloc(0);
  private started = false;
  private queue: FrontendMessage[] = [];
  private running = false;
  private unlock: (() => void) | null = null;
  private holdTimer: NodeJS.Timeout | null = null;
  private status = 'I';
  readonly listening = new Set<string>();
  readonly statements = new Set<string>();
  private closed = false;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly server: OwnerServer,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => void this.onClose());
  }

  destroy(): void {
    this.socket.destroy();
  }

  write(bytes: Uint8Array): void {
    if (!this.closed && this.socket.writable) this.socket.write(bytes);
  }

  private onData(d: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, d]) : d;
    for (;;) {
      const m = frontendMessage(this.buffer, this.started);
      if (!m) break;
      this.buffer = this.buffer.subarray(m.length);
      if (!this.handleImmediately(m)) this.queue.push(m);
    }
    void this.drain();
  }

  /** Messages answered without the database: SSL negotiation, startup, cancel, terminate. */
  private handleImmediately(m: FrontendMessage): boolean {
    if (m.kind === 'ssl') {
      this.write(Buffer.from('N'));
      return true;
    }
    if (m.kind === 'cancel') {
      this.socket.destroy();
      return true;
    }
    if (m.kind === 'startup') {
      this.started = true;
      this.write(startupReply(this.id));
      return true;
    }
    if (m.type === 'X') {
      this.socket.end();
      return true;
    }
    return false;
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        this.clearHoldTimer();
        const m = this.queue.shift()!;
        const listen = m.type === 'Q' ? listenCommand(m.body) : null;
        if (listen) {
          await this.server.setListening(this, listen.channel, listen.on);
          this.write(listen.reply(this.status));
          continue;
        }
        if (!this.unlock) this.unlock = await this.server.host.mutex.lock();
        if (this.closed) break;
        if (m.type === 'P') {
          const name = renameStatements(m, this.id);
          if (name) this.statements.add(name);
        } else renameStatements(m, this.id);
        const out = await this.server.exec(m.bytes);
        this.forward(out);
        if (this.status === 'I' && (m.type === 'S' || m.type === 'Q')) this.releaseLock();
      }
    } catch {
      this.socket.destroy();
    } finally {
      this.running = false;
    }
    if (this.unlock && !this.closed) this.armHoldTimer();
  }

  /** Sends the backend's answer, routing notifications to their listeners. */
  private forward(out: Uint8Array): void {
    const keep: Uint8Array[] = [];
    for (const msg of backendMessages(out)) {
      if (msg.type === 'A') this.server.deliver(msg.channel!, msg.payload!);
      else {
        if (msg.type === 'Z') this.status = msg.status!;
        keep.push(msg.bytes);
      }
    }
    if (keep.length) this.write(Buffer.concat(keep));
  }

  private releaseLock(): void {
    const u = this.unlock;
    this.unlock = null;
    u?.();
  }

  private armHoldTimer(): void {
    this.holdTimer = setTimeout(() => this.socket.destroy(), HOLD_TIMEOUT_MS);
    this.holdTimer.unref();
  }

  private clearHoldTimer(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
  }

  private async onClose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearHoldTimer();
    this.server.forget(this);
    while (this.running) await new Promise((r) => setTimeout(r, 5));
    const needsCleanup = this.unlock !== null || this.statements.size > 0;
    if (!needsCleanup) return;
    if (!this.unlock) this.unlock = await this.server.host.mutex.lock();
    try {
      // End an unfinished extended-protocol exchange, roll back an open transaction, drop our statements.
      await this.server.exec(Buffer.from([0x53, 0, 0, 0, 4])).catch(() => {});
      if (this.server.host.pglite.closed) return;
      await this.server.exec(queryMessage('rollback')).catch(() => {});
      for (const s of this.statements) await this.server.exec(queryMessage(`deallocate "${s}"`)).catch(() => {});
    } finally {
      this.releaseLock();
    }
  }
}

function listenCommand(body: Buffer): { channel: string; on: boolean; reply: (status: string) => Uint8Array } | null {
  const text = body.subarray(0, body.indexOf(0)).toString('utf8');
  const m = /^\s*(LISTEN|UNLISTEN)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?\s*;?\s*$/i.exec(text);
  if (!m) return null;
  const on = m[1]!.toUpperCase() === 'LISTEN';
  return { channel: m[2]!.toLowerCase(), on, reply: (status) => commandCompleteAndReady(on ? 'LISTEN' : 'UNLISTEN', status) };
}

function commandCompleteAndReady(tag: string, status: string): Uint8Array {
  const t = Buffer.from(`${tag}\0`);
  const c = Buffer.alloc(5);
  c.write('C', 0);
  c.writeInt32BE(4 + t.length, 1);
  const z = Buffer.from([0x5a, 0, 0, 0, 5, status.charCodeAt(0)]);
  return Buffer.concat([c, t, z]);
}

export class OwnerServer {
  private server: Server | null = null;
  private readonly connections = new Set<ClientConnection>();
  private readonly backendChannels = new Set<string>();
  private nextId = 1;
  readonly socketPath: string;

  constructor(
    readonly host: EmbeddedHost,
    dataDir: string,
  ) {
    this.socketPath = socketPathIn(socketDirFor(dataDir));
  }

  async start(): Promise<void> {
    mkdirSync(join(this.socketPath, '..'), { recursive: true, mode: 0o700 });
    // We own the directory (the lock), so a socket file here is a dead owner's.
    rmSync(this.socketPath, { force: true });
    const server = createServer((socket) => this.connections.add(new ClientConnection(this.nextId++, socket, this)));
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(this.socketPath, () => ok());
    });
    this.server = server;
  }

  /** Runs one protocol message on the backend (the caller holds the database lock). */
  async exec(message: Uint8Array): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    // The chunks are views of PGlite's memory, reused by the next call: copied at once.
    await this.host.pglite.execProtocolRawStream(message, { onRawData: (d) => chunks.push(Buffer.from(d)) });
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  async setListening(conn: ClientConnection, channel: string, on: boolean): Promise<void> {
    if (!on) {
      conn.listening.delete(channel);
      return;
    }
    conn.listening.add(channel);
    if (this.backendChannels.has(channel)) return;
    this.backendChannels.add(channel);
    // The backend listens once; notifications raised by this process's own statements come back
    // through PGlite's listener, those raised by clients' statements through their output.
    const unlock = await this.host.mutex.lock();
    try {
      await this.host.pglite.listen(channel, (payload) => this.deliver(channel, payload));
    } finally {
      unlock();
    }
  }

  deliver(channel: string, payload: string): void {
    let bytes: Uint8Array | null = null;
    for (const c of this.connections) {
      if (!c.listening.has(channel)) continue;
      bytes ??= notification(process.pid, channel, payload);
      c.write(bytes);
    }
  }

  forget(conn: ClientConnection): void {
    this.connections.delete(conn);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const c of this.connections) c.destroy();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 200))]);
    rmSync(this.socketPath, { force: true });
  }
}
