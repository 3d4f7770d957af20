/** The latest events, newest first, for the overview's activity list. */
import type { JobEvent } from "./protocol";

export const ACTIVITY_SIZE = 30;

export class Activity {
  private items: JobEvent[] = [];
  private readonly listeners = new Set<() => void>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  add(event: JobEvent): void {
    if (event.event === "progress") return;
    this.items = [event, ...this.items].slice(0, ACTIVITY_SIZE);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      for (const listener of this.listeners) listener();
    }, 250);
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): JobEvent[] => this.items;
}
