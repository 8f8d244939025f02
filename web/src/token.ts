// The API token, kept in localStorage under one key for both pages (the
// uploader at "/" and GraphiQL), so signing in on either signs in on both.
export const TOKEN_KEY = "spool.token";

export function loadToken(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return ""; // storage disabled: the page still works for this visit
  }
}

export function saveToken(token: string): void {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lasts as long as the page.
  }
}

// normalizeToken accepts what people paste: surrounding whitespace or a
// whole "Bearer …" header value.
export function normalizeToken(input: string): string {
  return input.trim().replace(/^bearer\s+/i, "");
}
