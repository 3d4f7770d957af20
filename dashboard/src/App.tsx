/** Routes: the login page until a key is set, then the pages inside the layout. */
import { Navigate, Route, Routes } from "react-router";

import { useAuth, usePermissions } from "./auth/AuthProvider";
import { Layout } from "./components/Layout/Layout";
import { LiveProvider } from "./live/LiveProvider";
import { DeadLettersPage } from "./pages/DeadLetters/DeadLettersPage";
import { JobDetailPage } from "./pages/JobDetail/JobDetailPage";
import { JobsPage } from "./pages/Jobs/JobsPage";
import { LoginPage } from "./pages/Login/LoginPage";
import { MetricsPage } from "./pages/Metrics/MetricsPage";
import { NotFoundPage } from "./pages/NotFound/NotFoundPage";
import { OverviewPage } from "./pages/Overview/OverviewPage";
import { QueuesPage } from "./pages/Queues/QueuesPage";
import { SchedulesPage } from "./pages/Schedules/SchedulesPage";
import { SubmitPage } from "./pages/Submit/SubmitPage";
import { WorkersPage } from "./pages/Workers/WorkersPage";
import { routes } from "./urls";

export function App() {
  const { key } = useAuth();
  if (key === null) return <LoginPage />;
  return (
    <LiveProvider>
      <Layout>
        <Pages />
      </Layout>
    </LiveProvider>
  );
}

function Pages() {
  const { readsAll } = usePermissions();
  // A producer key can only submit and follow its own jobs.
  const home = readsAll ? <OverviewPage /> : <Navigate to={routes.submit} replace />;
  return (
    <Routes>
      <Route path={routes.overview} element={home} />
      <Route path={routes.login} element={<Navigate to={routes.overview} replace />} />
      <Route path={routes.queues} element={<QueuesPage />} />
      <Route path={routes.jobs} element={<JobsPage />} />
      <Route path={routes.job} element={<JobDetailPage />} />
      <Route path={routes.deadLetters} element={<DeadLettersPage />} />
      <Route path={routes.deadLettersOf} element={<DeadLettersPage />} />
      <Route path={routes.workers} element={<WorkersPage />} />
      <Route path={routes.schedules} element={<SchedulesPage />} />
      <Route path={routes.metrics} element={<MetricsPage />} />
      <Route path={routes.submit} element={<SubmitPage />} />
      <Route path="*" element={<NotFoundPage />} />
    </Routes>
  );
}
