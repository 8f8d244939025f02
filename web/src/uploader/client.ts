// Creates the GraphQL client of one signed-in session: queries and
// mutations over HTTP, subscriptions over graphql-ws, both carrying the
// token. The page is served by spool itself, so both endpoints are on
// this origin.
import { Client, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient as createWsClient } from "graphql-ws";

export type ConnectionState = "connecting" | "connected" | "reconnecting";

export interface SpoolClient {
  urql: Client;
  dispose(): void;
}

export function createSpoolClient(
  token: string,
  onConnection: (state: ConnectionState) => void = () => {},
): SpoolClient {
  const authorization = `Bearer ${token}`;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let everConnected = false;
  const ws = createWsClient({
    url: `${scheme}//${location.host}/graphql`,
    connectionParams: { Authorization: authorization },
    // A page left open outlives any short outage: keep reconnecting,
    // but never more often than the capped backoff below.
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
    retryWait: (retries) =>
      new Promise((resolve) =>
        setTimeout(resolve, Math.min(15_000, 500 * 2 ** retries) * (0.5 + Math.random())),
      ),
    on: {
      connecting: () => onConnection(everConnected ? "reconnecting" : "connecting"),
      connected: () => {
        everConnected = true;
        onConnection("connected");
      },
      closed: () => {
        if (everConnected) onConnection("reconnecting");
      },
    },
  });

  const urql = new Client({
    url: "/graphql",
    // Without a cache every read goes to spool: the gallery and quota
    // must reflect uploads finished a moment ago.
    exchanges: [
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? "" };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
      fetchExchange,
    ],
    preferGetMethod: false,
    requestPolicy: "network-only",
    fetchOptions: () => ({ headers: { Authorization: authorization } }),
  });

  return {
    urql,
    dispose: () => void ws.dispose(),
  };
}
