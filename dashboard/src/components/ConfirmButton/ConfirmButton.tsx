/**
 * A button for a destructive action that asks once more in place ("Delete" -> "Confirm delete"),
 * keyboard friendly and without a blocking browser dialog.
 */
import { useEffect, useState } from "react";

type Props = {
  label: string;
  confirmLabel?: string;
  onConfirm: () => void;
  disabled?: boolean;
  danger?: boolean;
};

export function ConfirmButton({ label, confirmLabel, onConfirm, disabled, danger }: Props) {
  const [asking, setAsking] = useState(false);
  useEffect(() => {
    if (!asking) return undefined;
    const timer = setTimeout(() => setAsking(false), 5_000);
    return () => clearTimeout(timer);
  }, [asking]);
  const className = danger ? "button--danger" : undefined;
  if (!asking) {
    return <button type="button" className={className} disabled={disabled} onClick={() => setAsking(true)}>{label}</button>;
  }
  return (
    <span className="confirm">
      <button type="button" className={className ?? "button--primary"} disabled={disabled} autoFocus
              onClick={() => { setAsking(false); onConfirm(); }}>
        {confirmLabel ?? `Confirm ${label.toLowerCase()}`}
      </button>
      <button type="button" onClick={() => setAsking(false)}>Cancel</button>
    </span>
  );
}
