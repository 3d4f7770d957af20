/** Previous / next buttons for a paged list. */
export function Pager({ label, page, hasPrevious, hasNext, onPrevious, onNext, busy }: {
  label: string; page: number; hasPrevious: boolean; hasNext: boolean;
  onPrevious: () => void; onNext: () => void; busy?: boolean;
}) {
  return (
    <nav className="pager" aria-label={`${label} pages`}>
      <button type="button" onClick={onPrevious} disabled={!hasPrevious || busy}>← Previous</button>
      <span className="pager__page" aria-live="polite">Page {page}</span>
      <button type="button" onClick={onNext} disabled={!hasNext || busy}>Next →</button>
    </nav>
  );
}
