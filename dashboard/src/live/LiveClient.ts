/**
 * A WebSocket to /api/ws that stays connected: it authenticates with a first message (the key
 * never goes in the URL), subscribes, and after any drop reconnects with backoff and resumes
 * from the last event id it saw in each queue, so no event is missed or repeated.
 *
 * Responsibilities: the socket's lifecycle and backoff; the resume token (queue -> last entry
 * id); keep-alive pings; handing events and state changes to its owner. It knows nothing of
 * React or queries.
 */
import type { Role } from "../api/types";
import { CLOSE, type ClientMessage, type Filter, type JobEvent, type ServerMessage } from "./protocol";

export type LiveState = "connecting" | "live" | "reconnecting" | "stopped";

export type LiveHandlers = {
  onEvent: (event: JobEvent, replayed: boolean) => void;
  onState: (state: LiveState) => void;
  onRole?: (role: Role) => void;
  /** Events were lost (the stream was trimmed, or there is no position to resume from). */
  onGap?: (queue: string | null) => void;
  onUnauthorized?: (reason: string) => void;
  onError?: (message: string) => void;
};

export type LiveOptions = {
  url: string;
  key: string;
  /** The subscription for a role; null: stay connected without subscribing. */
  filterFor: (role: Role) => Filter | null;
  socket?: (url: string) => WebSocket;
  pingMs?: number;
  maxBackoffMs?: number;
};

const FIRST_BACKOFF_MS = 500;
const OPEN = 1; // WebSocket.OPEN, spelled out so the class runs where WebSocket is not a global

export class LiveClient {
  private ws: WebSocket | null = null;
  private readonly positions = new Map<string, string>();
  private role: Role | null = null;
  private backoffMs = FIRST_BACKOFF_MS;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private awaitingPong = false;
  private replaying = false;
  private everLive = false;
  private stopped = false;
  state: LiveState = "connecting";
  /** Reconnections so far (shown in the status bar, read by the browser tests). */
  reconnects = 0;

  constructor(private readonly options: LiveOptions, private readonly handlers: LiveHandlers) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.closeSocket(1000, "bye");
    this.setState("stopped");
  }

  /** Drop the connection as a network failure would (it then reconnects and resumes). */
  drop(): void {
    this.ws?.close(4000, "dropped by the client");
  }

  /** Subscribe again, for a new filter (e.g. a producer's watched jobs changed). */
  resubscribe(): void {
    if (this.role !== null && this.ws?.readyState === OPEN) this.subscribe(this.role);
  }

  /** Where each queue's events were read up to (the resume token). */
  get resumeToken(): Record<string, string> {
    return Object.fromEntries(this.positions);
  }

  private connect(): void {
    this.setState(this.everLive ? "reconnecting" : "connecting");
    const open = this.options.socket ?? ((url: string) => new WebSocket(url));
    const ws = open(this.options.url);
    this.ws = ws;
    ws.onopen = () => this.send({ type: "auth", key: this.options.key });
    ws.onmessage = (msg: MessageEvent) => this.receive(String(msg.data));
    ws.onclose = (close: CloseEvent) => this.closed(ws, close.code, close.reason);
  }

  private receive(text: string): void {
    let msg: ServerMessage;
    try {
      msg = JSON.parse(text) as ServerMessage;
    } catch {
      this.handlers.onError?.("the server sent a message that is not JSON");
      return;
    }
    switch (msg.type) {
      case "event":
        this.positions.set(msg.queue, msg.id);
        this.handlers.onEvent(msg, this.replaying);
        break;
      case "authenticated":
        this.role = msg.role;
        this.handlers.onRole?.(msg.role);
        this.subscribe(msg.role);
        break;
      case "subscribed":
        for (const [queue, id] of Object.entries(msg.cursor)) {
          if (!this.positions.has(queue)) this.positions.set(queue, id);
        }
        break;
      case "queue":
        if (!this.positions.has(msg.queue)) this.positions.set(msg.queue, msg.id);
        break;
      case "gap":
        this.handlers.onGap?.(msg.queue);
        break;
      case "live":
        this.replaying = false;
        this.backoffMs = FIRST_BACKOFF_MS;
        this.everLive = true;
        this.setState("live");
        break;
      case "pong":
        this.awaitingPong = false;
        break;
      case "error":
        this.handlers.onError?.(msg.message);
        break;
    }
  }

  private subscribe(role: Role): void {
    const filter = this.options.filterFor(role);
    if (filter === null) {
      this.setState("live");
      return;
    }
    const resuming = this.everLive || this.positions.size > 0;
    this.replaying = resuming;
    const message: ClientMessage = { type: "subscribe", ...filter };
    if (resuming) message.resume = this.resumeToken;
    this.send(message);
    this.startPings();
  }

  private closed(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopPings();
    if (this.stopped) return;
    if (code === CLOSE.unauthorized || code === CLOSE.forbidden) {
      this.stopped = true;
      this.setState("stopped");
      this.handlers.onUnauthorized?.(reason || "the API key was refused");
      return;
    }
    if (this.everLive && this.positions.size === 0) this.handlers.onGap?.(null);
    this.setState(this.everLive ? "reconnecting" : "connecting");
    this.reconnects += 1;
    const delay = this.backoffMs * (0.75 + Math.random() * 0.5);
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs ?? 10_000);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private startPings(): void {
    this.stopPings();
    this.pingTimer = setInterval(() => {
      if (this.awaitingPong) {
        this.ws?.close(4000, "no pong: the connection is dead");  // reconnects
        return;
      }
      this.awaitingPong = true;
      this.send({ type: "ping" });
    }, this.options.pingMs ?? 20_000);
  }

  private stopPings(): void {
    clearInterval(this.pingTimer);
    this.awaitingPong = false;
  }

  private send(message: ClientMessage): void {
    if (this.ws?.readyState === OPEN) this.ws.send(JSON.stringify(message));
  }

  private closeSocket(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = null;
    this.stopPings();
    if (ws && ws.readyState <= OPEN) ws.close(code, reason);
  }

  private setState(state: LiveState): void {
    if (state === this.state) return;
    this.state = state;
    this.handlers.onState(state);
  }
}
