// The GraphiQL page spool serves at /graphiql. Everything it needs,
// Monaco's web workers and fonts included, is bundled: it must work with
// no network but spool itself.
import "graphiql/setup-workers/vite";
import "graphiql/style.css";
import "./page.css";

import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";

const container = document.getElementById("graphiql-app");
if (!container) throw new Error("graphiql.html has no #graphiql-app element");
createRoot(container).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
