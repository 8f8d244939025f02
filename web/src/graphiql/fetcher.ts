import { createGraphiQLFetcher, type Fetcher } from "@graphiql/toolkit";

// spoolFetcher sends queries and mutations over HTTP and subscriptions
// over graphql-ws, both to this page's own origin, with the token as a
// bearer Authorization header (for websockets, in the connection_init
// payload, where spool looks for it). Headers typed into GraphiQL's
// headers editor are added to both and win over these.
//
// The toolkit opens a new graphql-ws client for each subscription it
// runs, so a fetcher made for a new token makes every later subscription
// authenticate with that token.
export function spoolFetcher(token: string): Fetcher {
  const auth: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const wsScheme = location.protocol === "https:" ? "wss:" : "ws:";
  return createGraphiQLFetcher({
    url: `${location.origin}/graphql`,
    subscriptionUrl: `${wsScheme}//${location.host}/graphql`,
    headers: auth,
    wsConnectionParams: auth,
  });
}
