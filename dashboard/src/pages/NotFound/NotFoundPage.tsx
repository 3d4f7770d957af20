import { Link } from "react-router";

import { routes } from "../../urls";

export function NotFoundPage() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>There is no such page. <Link to={routes.overview}>Go to the overview</Link>.</p>
    </section>
  );
}
