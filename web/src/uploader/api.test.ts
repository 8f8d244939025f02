// How spool's GraphQL errors become the uploader's ServiceErrors.
import { CombinedError } from "@urql/core";
import { GraphQLError } from "graphql";
import { describe, expect, it } from "vitest";
import { toServiceError } from "./api";

describe("toServiceError", () => {
  it("keeps spool's code and the wait it asked for (extensions.retryAfter, at most a minute)", () => {
    const of = (extensions: Record<string, unknown>) =>
      toServiceError(new CombinedError({ graphQLErrors: [new GraphQLError("slow down", { extensions })] }));
    expect(of({ code: "RATE_LIMITED", retryAfter: 3 })).toMatchObject({ code: "RATE_LIMITED", retryAfterMs: 3_000 });
    expect(of({ code: "UNAVAILABLE", retryAfter: 3_600 })).toMatchObject({ code: "UNAVAILABLE", retryAfterMs: 60_000 });
    expect(of({ code: "QUOTA_EXCEEDED" })).toMatchObject({ code: "QUOTA_EXCEEDED", retryAfterMs: 0 });
    expect(of({ code: "RATE_LIMITED", retryAfter: "soon" })).toMatchObject({ retryAfterMs: 0 });
  });

  it("calls an answer without GraphQL errors a network failure", () => {
    expect(toServiceError(new CombinedError({ networkError: new Error("offline") }))).toMatchObject({ code: "NETWORK" });
  });
});
