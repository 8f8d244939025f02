import { GraphiQL } from "graphiql";
import { useEffect, useMemo, useState, type FormEvent } from "react";
import { exampleTabs } from "./examples";
import { spoolFetcher } from "./fetcher";
import { TOKEN_KEY, loadToken, normalizeToken, saveToken } from "../token";

export function App() {
  const [token, setToken] = useState(loadToken);

  // Signing in or out on the uploader page in another tab applies here too.
  useEffect(() => {
    const onStorage = (e: StorageEvent) => {
      if (e.key === TOKEN_KEY || e.key === null) setToken(loadToken());
    };
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  }, []);

  // A new fetcher for each token: GraphiQL reloads the schema with it, and
  // every later subscription opens its websocket with the new token.
  const fetcher = useMemo(() => spoolFetcher(token), [token]);

  const applyToken = (next: string) => {
    saveToken(next);
    setToken(next);
  };

  return (
    <div className="spool-page">
      <TokenBar token={token} onToken={applyToken} />
      <main className="spool-graphiql">
        <GraphiQL fetcher={fetcher} defaultTabs={exampleTabs} />
      </main>
    </div>
  );
}

function TokenBar({ token, onToken }: { token: string; onToken: (token: string) => void }) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState("");
  const showForm = editing || !token;

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const next = normalizeToken(draft);
    if (!next) return;
    onToken(next);
    setDraft("");
    setEditing(false);
  };

  return (
    <header className="spool-bar">
      <a className="spool-bar-link" href="/">
        Uploader
      </a>
      {showForm ? (
        <form className="spool-bar-form" onSubmit={submit}>
          <label htmlFor="graphiql-token">API token</label>
          <input
            id="graphiql-token"
            type="password"
            autoComplete="off"
            spellCheck={false}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            autoFocus={editing}
          />
          <button type="submit" disabled={!normalizeToken(draft)}>
            Use token
          </button>
          {token && (
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
          )}
          {!token && <span className="spool-bar-hint">Get one with: spool token --user NAME</span>}
        </form>
      ) : (
        <div className="spool-bar-form">
          <span className="spool-bar-status">signed in</span>
          <button type="button" onClick={() => setEditing(true)}>
            Change token
          </button>
        </div>
      )}
    </header>
  );
}
