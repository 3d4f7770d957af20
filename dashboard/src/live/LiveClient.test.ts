import { describe, expect, it, vi } from "vitest";

import { LiveClient } from "./LiveClient";
import type { JobEvent } from "./protocol";

class FakeSocket {
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: string }) => void) | null = null;
  onclose: ((c: { code: number; reason: string }) => void) | null = null;
  open() { this.readyState = 1; this.onopen?.(); }
  send(text: string) { this.sent.push(JSON.parse(text) as Record<string, unknown>); }
  receive(message: object) { this.onmessage?.({ data: JSON.stringify(message) }); }
  close(code = 1006, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
}

const ev = (queue: string, id: string): JobEvent =>
  ({ type: "event", queue, id, job: "j", event: "completed", status: "completed", seq: 1, ts: 1 });

describe("LiveClient", () => {
  it("authenticates by message, then resumes from the last event id after a drop", () => {
    vi.useFakeTimers();
    const sockets: FakeSocket[] = [];
    const events: [string, boolean][] = [];
    const client = new LiveClient(
      { url: "ws://x/api/ws", key: "k", filterFor: () => ({}),
        socket: () => { const s = new FakeSocket(); sockets.push(s); return s as unknown as WebSocket; } },
      { onEvent: (e, replayed) => events.push([e.id, replayed]), onState: () => undefined });
    client.start();
    const first = sockets[0]!;
    first.open();
    expect(first.sent[0]).toEqual({ type: "auth", key: "k" });
    first.receive({ type: "authenticated", role: "admin" });
    expect(first.sent[1]).toEqual({ type: "subscribe" });  // first time: live events only
    first.receive({ type: "subscribed", cursor: { a: "1-0", b: "5-0" } });
    first.receive({ type: "live" });
    first.receive(ev("a", "2-0"));
    expect(client.state).toBe("live");

    first.close(1006);
    expect(client.state).toBe("reconnecting");
    vi.advanceTimersByTime(1_000);
    const second = sockets[1]!;
    second.open();
    second.receive({ type: "authenticated", role: "admin" });
    expect(second.sent[1]).toEqual({ type: "subscribe", resume: { a: "2-0", b: "5-0" } });
    second.receive(ev("b", "6-0"));
    second.receive({ type: "live" });
    expect(events).toEqual([["2-0", false], ["6-0", true]]);
    expect(client.reconnects).toBe(1);
    client.stop();
    vi.useRealTimers();
  });

  it("stops for good when the key is refused", () => {
    const sockets: FakeSocket[] = [];
    const refused: string[] = [];
    const client = new LiveClient(
      { url: "ws://x", key: "bad", filterFor: () => ({}),
        socket: () => { const s = new FakeSocket(); sockets.push(s); return s as unknown as WebSocket; } },
      { onEvent: () => undefined, onState: () => undefined, onUnauthorized: (r) => refused.push(r) });
    client.start();
    sockets[0]!.open();
    sockets[0]!.close(4001, "unknown or revoked API key");
    expect(refused).toEqual(["unknown or revoked API key"]);
    expect(client.state).toBe("stopped");
    expect(sockets).toHaveLength(1);
  });
});
