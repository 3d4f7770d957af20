/** A message after an action: success is polite, failure is an alert. */
export type NoticeValue = { kind: "ok" | "error"; text: string } | null;

export function Notice({ notice }: { notice: NoticeValue }) {
  if (notice === null) return <div role="status" aria-live="polite" className="notice-slot" />;
  return (
    <div role={notice.kind === "error" ? "alert" : "status"} aria-live="polite"
         className={`notice notice--${notice.kind}`}>
      {notice.text}
    </div>
  );
}
