/** A WebSocket test client: collects frames and waits for the next one that matches. */
import WebSocket from 'ws';

export type Frame = { type: string; data?: any; [k: string]: any };

export class WsClient {
  readonly frames: Frame[] = [];
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString()) as Frame;
      this.frames.push(f);
      for (const w of [...this.waiters]) {
        if (w.pred(f)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(f);
        }
      }
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /**
   * Opens a socket and waits for its first frame (`ready` on /api/v2/ws; the original app's
   * sockets say `connection-established`); rejects with `HTTP <status>` when the upgrade is refused.
   */
  static open(url: string, protocols?: string[], ready: (f: Frame) => boolean = (f) => f.type === 'ready'): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      const c = new WsClient(ws);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
      c.next(ready).then(() => resolve(c), reject);
    });
  }

  next(pred: (f: Frame) => boolean, timeoutMs = 4_000): Promise<Frame> {
    const have = this.frames.find(pred);
    if (have) {
      this.frames.splice(this.frames.indexOf(have), 1);
      return Promise.resolve(have);
    }
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (f: Frame) => {
          clearTimeout(timer);
          this.frames.splice(this.frames.indexOf(f), 1);
          resolve(f);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for a frame; got ${JSON.stringify(this.frames.map((x) => x.type))}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  async request(msg: Record<string, unknown>): Promise<Frame> {
    const ref = `r${Math.random()}`;
    this.ws.send(JSON.stringify({ ...msg, ref }));
    return this.next((f) => f.ref === ref);
  }

  /** The close, or a timeout error after `ms`. */
  closedWithin(ms: number): Promise<{ code: number; reason: string }> {
    return Promise.race([
      this.closed,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms).unref()),
    ]);
  }

  /** True if no frame matching `pred` arrives within `ms`. */
  async never(pred: (f: Frame) => boolean, ms = 300): Promise<boolean> {
    try {
      await this.next(pred, ms);
      return false;
    } catch {
      return true;
    }
  }

  send(frame: Record<string, unknown>) {
    this.ws.send(JSON.stringify(frame));
  }

  close() {
    this.ws.close();
  }
}
