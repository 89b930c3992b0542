import { render } from "preact";
import { useEffect } from "preact/hooks";
import "./styles.css";
import { Layout } from "./components/Layout";
import { AuthPage } from "./pages/AuthPage";
import { CasePage } from "./pages/CasePage";
import { CasesPage } from "./pages/CasesPage";
import { DocumentPage } from "./pages/DocumentPage";
import { KnowledgePage } from "./pages/KnowledgePage";
import { SettingsPage } from "./pages/SettingsPage";
import { interceptLinks, match, navigate, useRoute } from "./router";
import { api, currentUser, loginNotice, useStore } from "./state";
import type { UserProfile } from "./api/types";

api.onExpired = (message) => {
  currentUser.set(null);
  loginNotice.set(message);
  navigate("/login", { replace: true });
};

function App() {
  const route = useRoute();
  const user = useStore(currentUser);
  const publicPage = route.path === "/login" || route.path === "/register";

  useEffect(() => {
    if (!user && !publicPage) navigate("/login", { replace: true });
    if (user && (publicPage || route.path === "/")) navigate("/cases", { replace: true });
  }, [user, publicPage, route.path]);

  // Roles can change between visits: read them fresh once per load.
  useEffect(() => {
    if (!api.tokens) return;
    api
      .call<UserProfile>("/api/v1/auth/me")
      .then((me) => {
        const tokens = api.tokens;
        if (tokens) api.store.save({ ...tokens, user: { ...tokens.user, ...me } });
        currentUser.set({ ...(currentUser.value ?? me), ...me });
      })
      .catch(() => undefined);
  }, []);

  if (!user || publicPage) {
    return <AuthPage mode={route.path === "/register" ? "register" : "login"} />;
  }
  let page;
  let params: Record<string, string> | null;
  if ((params = match("/cases/:id", route.path))) page = <CasePage caseId={params.id} />;
  else if ((params = match("/knowledge/:id", route.path)))
    page = <DocumentPage documentId={params.id} query={route.query} />;
  else if (route.path === "/knowledge") page = <KnowledgePage />;
  else if (route.path === "/settings") page = <SettingsPage />;
  else if (route.path === "/cases" || route.path === "/") page = <CasesPage query={route.query} />;
  else
    page = (
      <section class="panel">
        <h1>Page not found</h1>
        <p>
          There is nothing at {route.path}. <a href="/cases">Back to your cases</a>.
        </p>
      </section>
    );
  return <Layout path={route.path}>{page}</Layout>;
}

interceptLinks();
render(<App />, document.getElementById("app")!);
